"""Selectors learned from pages the LLM answered (wrapper induction), and applied to new ones.

A :data:`Rule` says where one field's value is on a page of the template:
an XPath (``xpath``), what to read from what it selects (``take``: the
element's text or an attribute), an optional ``regex`` whose group is the
value (``SKU: (.+)``), and the field's ``kind`` (string, number, integer,
list of strings). A field the LLM found on none of the samples has the rule
``{"absent": True}``.

Learning locates each answered value in each sample's tree, writes the
candidate XPaths for the element holding it, most stable first — ``itemprop``,
``id``, ``data-*`` attributes, the label next to it (``<th>Brand</th><td>``),
its class names, a class-anchored parent, and last a positional path — and
keeps the first candidate that gives the answered value on every sample
(and nothing where the answer was empty) — or, when none does, one that gives
every answered value and a value on one sample whose answer left it empty.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, NotRequired, TypedDict

from lxml import etree

from batchscraper.extraction.coerce import parse_number, schema_types
from batchscraper.extraction.heuristics.page import text_of
from batchscraper.jsontypes import JSONObject, JSONValue
from batchscraper.llm.merge import is_empty

if TYPE_CHECKING:
    from lxml.html import HtmlElement


class Rule(TypedDict):
    """How a template reads one field: the element ``xpath`` selects, its text or attribute
    ``take``, an optional ``regex`` capture, coerced to ``kind``; ``absent``: the field is
    empty on this template's pages."""

    kind: str  # string, number, integer, list
    xpath: NotRequired[str]
    take: NotRequired[str]  # text, or an attribute name
    regex: NotRequired[str]
    absent: NotRequired[bool]


#: element texts longer than this never hold one scalar value
MAX_VALUE_TEXT = 300
#: a label is short, digit-free text
MAX_LABEL = 40
#: attributes read when a value is not in an element's text
VALUE_ATTRIBUTES = ("content", "value", "datetime", "title", "alt")
NUMBER_TOLERANCE = 1e-9
#: samples that must give a field's value before a rule may disagree with an empty answer
MIN_GIVEN = 2
_SPACES = re.compile(r"\s+")
_DIGIT = re.compile(r"\d")
_NUMBER = re.compile(r"[-+]?\d[\d.,]*")
_SAFE_TOKEN = re.compile(r"^[A-Za-z_][\w-]*$")


@dataclass(frozen=True)
class Sample:
    """One LLM-answered page: its tree and the grounded answer for some fields."""

    tree: HtmlElement
    answer: JSONObject


def fold(text: str) -> str:
    """Whitespace folded: how strings are compared (as the accuracy scorer does)."""
    return _SPACES.sub(" ", text).strip()


def same_value(first: object, second: object) -> bool:
    """Numbers equal, strings equal after whitespace folding, lists element by element."""
    if is_empty(first) and is_empty(second):
        return True
    if isinstance(first, bool) or isinstance(second, bool):
        return first is second
    if isinstance(first, (int, float)) and isinstance(second, (int, float)):
        return math.isclose(first, second, rel_tol=NUMBER_TOLERANCE, abs_tol=NUMBER_TOLERANCE)
    if isinstance(first, str) and isinstance(second, str):
        return fold(first) == fold(second)
    if isinstance(first, list) and isinstance(second, list):
        return len(first) == len(second) and all(
            same_value(a, b) for a, b in zip(first, second, strict=True))
    return bool(first == second)


def field_kind(schema: JSONValue | None) -> str | None:
    """What a rule reads for a field of this schema (a property's, None when the schema has
    no such property); None when templates cannot learn it."""
    if not isinstance(schema, dict):
        return None
    types = set(schema_types(schema)) - {"null"}
    if types == {"array"}:
        items = schema.get("items") or {}
        return "list" if isinstance(items, dict) and set(schema_types(items)) <= {"string"} \
            else None
    for kind in ("number", "integer", "string"):
        if types == {kind}:
            return kind
    return None


# -- applying -------------------------------------------------------------------------


class RuleFailed(Exception):
    """A rule selected something it cannot read (its regex did not match)."""


def apply_rule(tree: HtmlElement, rule: Rule) -> JSONValue:
    """The value ``rule`` reads from ``tree``: None when its XPath selects nothing."""
    if rule.get("absent"):
        return None
    try:
        found = tree.xpath(rule["xpath"])
    except etree.XPathError:
        raise RuleFailed(rule["xpath"]) from None
    texts = [_read(element, rule) for element in found]
    if rule["kind"] == "list":
        return [text for text in texts if text]
    if not texts:
        return None
    return _typed(texts[0], rule)


def _read(element: HtmlElement, rule: Rule) -> str:
    take = rule.get("take", "text")
    text = fold(text_of(element)) if take == "text" else fold(element.get(take) or "")
    pattern = rule.get("regex")
    if pattern and text:
        match = re.search(pattern, text)
        if match is None:
            raise RuleFailed(pattern)
        text = fold(match.group(1))
    return text


def _typed(text: str, rule: Rule) -> JSONValue:
    if rule["kind"] == "string":
        return text or None
    number = parse_number(text)
    if number is None:
        raise RuleFailed(f"no number in {text[:40]!r}")
    if rule["kind"] == "integer":
        if not float(number).is_integer():
            raise RuleFailed(f"not an integer: {number}")
        return int(number)
    return number


def apply_rules(tree: HtmlElement, rules: dict[str, Rule]) -> JSONObject:
    """Every field's value on this page; RuleFailed when one rule cannot read its element."""
    return {name: apply_rule(tree, rule) for name, rule in rules.items()}


def read_values(tree: HtmlElement, rules: dict[str, Rule], ask: frozenset[str]
                ) -> JSONObject | None:
    """The ``ask`` fields' values the rules read on this page; None when one cannot read."""
    try:
        return apply_rules(tree, {name: rule for name, rule in rules.items() if name in ask})
    except RuleFailed:
        return None


# -- learning ---------------------------------------------------------------------------


def learn_rules(samples: list[Sample], properties: JSONObject) -> dict[str, Rule]:
    """A rule for each answered field that one selector reproduces on every sample."""
    rules: dict[str, Rule] = {}
    names = {name for sample in samples for name in sample.answer}
    for name in sorted(names):
        kind = field_kind(properties.get(name))
        answered = [s for s in samples if name in s.answer]
        if kind is None or not answered:
            continue
        if all(is_empty(s.answer[name]) for s in answered):
            rules[name] = {"absent": True, "kind": kind}
            continue
        rule = _learn_field(name, kind, answered)
        if rule is not None:
            rules[name] = rule
    return rules


def _learn_field(name: str, kind: str, samples: list[Sample]) -> Rule | None:
    """The first candidate that reproduces every sample; else one that reproduces every
    value the LLM gave and reads a value on at most one sample where its answer was empty
    (a model leaves a field out now and then; verification and audits judge the rule)."""
    tried: dict[tuple[str, str, str | None], Rule] = {}
    for sample in samples:
        value = sample.answer[name]
        if is_empty(value):
            continue
        for rule in _candidates(sample.tree, value, kind):
            key = (rule["xpath"], rule.get("take", "text"), rule.get("regex"))
            if key in tried:
                continue
            tried[key] = rule
            if all(_reproduces(s.tree, rule, s.answer[name]) for s in samples):
                return rule
    given = [s for s in samples if not is_empty(s.answer[name])]
    left_out = [s for s in samples if is_empty(s.answer[name])]
    if len(given) < MIN_GIVEN or not left_out:
        return None
    for rule in tried.values():
        if all(_reproduces(s.tree, rule, s.answer[name]) for s in given) and \
                sum(not _reproduces(s.tree, rule, None) for s in left_out) <= 1:
            return rule
    return None


def _reproduces(tree: HtmlElement, rule: Rule, expected: JSONValue) -> bool:
    try:
        return same_value(apply_rule(tree, rule), expected)
    except RuleFailed:
        return False


def _candidates(tree: HtmlElement, value: JSONValue, kind: str) -> Iterator[Rule]:
    """Rules that read ``value`` on this sample, most stable first."""
    first = value[0] if kind == "list" and isinstance(value, list) else value
    for element, take, regex in _holders(tree, first, kind):
        for xpath in _xpaths(element, tree):
            rule: Rule = {"xpath": xpath, "take": take, "kind": kind}
            if regex:
                rule["regex"] = regex
            yield rule


def _holders(tree: HtmlElement, value: JSONValue, kind: str
             ) -> Iterator[tuple[HtmlElement, str, str | None]]:
    """Elements holding ``value``: exactly, in an attribute, or behind a label (a regex)."""
    wanted = fold(str(value)) if kind in ("string", "list") else None
    labelled = []
    for element in tree.iter():
        if not isinstance(element.tag, str) or element.tag in ("script", "style"):
            continue
        for attribute in VALUE_ATTRIBUTES:
            if element.get(attribute) and _matches(fold(element.get(attribute)), value, wanted):
                yield element, attribute, None
        if element.tag in ("head", "html", "title"):
            continue
        text = fold(text_of(element))
        if not text or len(text) > MAX_VALUE_TEXT:
            continue
        if _matches(text, value, wanted):
            if not any(_matches(fold(text_of(child)), value, wanted) for child in element
                       if isinstance(child.tag, str)):
                yield element, "text", None
            continue
        regex = _label_regex(text, value, wanted)
        if regex is not None:
            labelled.append((element, "text", regex))
    # innermost first: the element closest to the value has the most specific selectors
    yield from reversed(labelled)


def _label_regex(text: str, value: JSONValue, wanted: str | None) -> str | None:
    """``^Label:\\s*(.+)$`` when ``text`` is a short label followed by the value."""
    if wanted is not None:
        at = text.find(wanted)
        if at <= 0 or text[at + len(wanted):].strip():
            return None
        prefix, capture = text[:at].strip(), "(.+)$"
    else:
        found = next((m for m in _NUMBER.finditer(text)
                      if same_value(parse_number(m.group(0)), value)), None)
        if found is None or found.start() == 0:
            return None
        prefix, capture = text[:found.start()].strip(), r"([-+]?\d[\d.,]*)"
    if not prefix or len(prefix) > MAX_LABEL or _DIGIT.search(prefix):
        return None
    return rf"^{re.escape(prefix)}\s*{capture}"


def _matches(text: str, value: JSONValue, wanted: str | None) -> bool:
    if wanted is not None:
        return text == wanted
    number = parse_number(text)
    return number is not None and same_value(number, value)


def _xpaths(element: HtmlElement, tree: HtmlElement) -> Iterator[str]:
    tag = element.tag
    for attribute in ("itemprop", "id"):
        name = element.get(attribute)
        if name and _stable(name):
            yield f"//{tag}[@{attribute}='{name}']"
    for attribute, name in element.attrib.items():
        if attribute.startswith("data-") and _stable(name):
            yield f"//{tag}[@{attribute}='{name}']"
    label = _label_before(element)
    if label is not None:
        label_tag, text = label
        yield f"//{label_tag}[normalize-space()='{text}']/following-sibling::{tag}[1]"
    for name in _classes(element):
        yield f"//{tag}[{_has_class(name)}]"
    parent = element.getparent()
    while parent is not None and parent.tag not in ("body", "html"):
        anchor = _anchor(parent)
        if anchor:
            yield f"{anchor}//{tag}"
            break
        parent = parent.getparent()
    yield tree.getroottree().getpath(element)


def _label_before(element: HtmlElement) -> tuple[str, str] | None:
    previous = element.getprevious()
    while previous is not None and not isinstance(previous.tag, str):
        previous = previous.getprevious()
    if previous is None:
        return None
    text = fold(text_of(previous))
    if not text or len(text) > MAX_LABEL or _DIGIT.search(text) or "'" in text:
        return None
    return previous.tag, text


def _anchor(element: HtmlElement) -> str | None:
    name = element.get("id")
    if name and _stable(name):
        return f"//{element.tag}[@id='{name}']"
    classes = _classes(element)
    return f"//{element.tag}[{_has_class(classes[0])}]" if classes else None


def _classes(element: HtmlElement) -> list[str]:
    return [c for c in (element.get("class") or "").split() if _stable(c)]


def _has_class(name: str) -> str:
    return f"contains(concat(' ', normalize-space(@class), ' '), ' {name} ')"


def _stable(name: str) -> bool:
    """A name a template keeps across pages: no digits, safe inside an XPath literal."""
    return bool(_SAFE_TOKEN.match(name)) and not _DIGIT.search(name)
