"""Values for the schema fields that a page's structured data left empty.

:func:`fill_missing` runs after :func:`..structured.map_to_schema` and reads
the page the way a person would: meta tags, the main heading and ``<title>``,
trafilatura's article extraction (body, byline, date, site name), htmldate,
the price and stock words near the main heading, labelled codes
(``SKU: 123``, ``EAN: ...``, check digit verified), and recipe ingredient and
step lists found by their headings or class names.

Finders (in :mod:`.articles`, :mod:`.products`, :mod:`.recipes`) return
schema.org properties (``headline``, ``offers.price``, ``recipeIngredient``);
the structured-data mapper's :class:`..shaping.Shaper` puts them on the user's
fields with the same synonyms and type shaping. Only fields, and leaves of
nested objects, that are still missing are filled; a finder runs only when
one of its properties could fill one of them (nothing runs when structured
data answered every field; trafilatura only for article fields).

Two kinds of structured value stand in for what the page shows, and give way
to it when the page holds the same words: a text that ends in an ellipsis (a
JSON-LD ``articleBody`` cut after a paragraph), replaced by the longer text
it begins; a list of one long item (a recipe's method as one ``HowToStep``),
replaced by the page's list of the same text in several items.

Every value is taken from the page and carries its evidence: ``meta``,
``itemprop``, ``heading``, ``title``, ``trafilatura``, ``time``,
``htmldate``, ``pattern`` (prices, stock words), ``label`` (``Brand: X``) or
``structure`` (the list under an "Ingredients" heading).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import cast

from batchscraper.extraction import synonyms as syn
from batchscraper.extraction.heuristics import articles, products, recipes, words
from batchscraper.extraction.heuristics.articles import Facts
from batchscraper.extraction.heuristics.page import PageReader
from batchscraper.extraction.shaping import Shaper, is_empty
from batchscraper.jsontypes import JSONObject, JSONValue

logger = logging.getLogger(__name__)

#: Evidence of :func:`..structured.map_to_schema`; any other evidence is a heuristic's.
STRUCTURED_SOURCES = frozenset({"jsonld", "microdata", "og"})
#: How deep nested schema objects are walked and mapped.
MAX_DEPTH = 4
#: Shortest text (ending in an ellipsis, or a list's one item) that stands in for more.
STAND_IN_MIN_CHARS = 80
#: Share of a stand-in's words the page's value must hold to replace it (both ways for lists).
STAND_IN_OVERLAP = 0.8
_ELLIPSIS = re.compile(r"(?:\u2026|\.\.\.|\[(?:\u2026|\.\.\.)\])\s*$")
_WORD = re.compile(r"\w+")

Finder = Callable[[PageReader], Facts]
#: (lower-cased schema.org properties a finder can give, finder); earlier finders win.
FINDERS: tuple[tuple[frozenset[str], Finder], ...] = tuple(
    (frozenset(p.lower() for p in props), find) for props, find in (
        (("headline", "name", "title", "alternativeHeadline"), articles.title_facts),
        (tuple(words.META_KEYS), articles.meta_facts),
        ((*articles.ITEMPROPS, "ingredients"), articles.itemprop_facts),
        (("author", "creator", "datePublished", "dateCreated", "publisher",
          "sourceOrganization"), articles.byline_facts),
        (("articleBody", "text"), articles.body_facts),
        (("datePublished", "dateCreated"), articles.date_facts),
        (("price", "priceCurrency", "availability"), products.offer_facts),
        (("sku", "gtin", "gtin13", "gtin12", "gtin8", "isbn", "mpn", "model", "brand",
          "manufacturer"), products.label_facts),
        (("recipeIngredient", "ingredients", "supply"), recipes.ingredient_facts),
        (("recipeInstructions", "step", "steps"), recipes.step_facts),
        (("totalTime", "prepTime", "cookTime", "performTime", "recipeYield", "yield"),
         recipes.time_facts),
        (("nutrition", "calories", "proteinContent", "fatContent", "carbohydrateContent"),
         recipes.nutrition_facts),
    ))


def fill_missing(
    html: str, url: str, schema: JSONObject, data: JSONObject, evidence: dict[str, str]
) -> tuple[JSONObject, dict[str, str]]:
    """``data`` with the fields (and nested leaves) it lacks filled from the page.

    Values already in ``data`` are kept. ``evidence`` gains an entry for each
    filled field (``"label"``, or ``"microdata+pattern"`` when a nested object
    was completed). Never raises: on any failure the record stays as it was.
    """
    stand_ins = {name: value for name, value in data.items() if stands_in(value)}
    kept = {name: value for name, value in data.items() if name not in stand_ins}
    wanted = wanted_properties(schema, kept)
    if not wanted:
        return data, evidence
    try:
        facts = collect_facts(PageReader(html, url), wanted)
        filled, why = merge_facts(schema, kept, {name: source for name, source in
                                                 evidence.items() if name not in stand_ins},
                                  facts)
    except Exception:
        logger.exception("page heuristics failed on %s", url)
        return data, evidence
    for name, value in stand_ins.items():
        if not replaces(filled.get(name), value):
            filled[name], why[name] = value, evidence[name]
    order = _property_names(schema)
    return ({k: filled[k] for k in order if k in filled},
            {k: why[k] for k in order if k in why})


def stands_in(value: JSONValue) -> bool:
    """Whether ``value`` is a long text cut short with an ellipsis, or a list of one long
    item."""
    if isinstance(value, str):
        return len(value) >= STAND_IN_MIN_CHARS and bool(_ELLIPSIS.search(value))
    return isinstance(value, list) and len(value) == 1 and len(
        " ".join(_strings(value))) >= STAND_IN_MIN_CHARS


def replaces(found: JSONValue, stand_in: JSONValue) -> bool:
    """Whether the page's ``found`` is the fuller form of ``stand_in``: a longer text that
    holds (nearly) all of its words, or a longer list of (nearly) the same words."""
    if isinstance(stand_in, str):
        return isinstance(found, str) and len(found) > len(stand_in) and _share(
            stand_in, found) >= STAND_IN_OVERLAP
    return isinstance(found, list) and isinstance(stand_in, list) and len(found) > len(
        stand_in) and min(
        _share(stand_in, found), _share(found, stand_in)) >= STAND_IN_OVERLAP


def _share(part: JSONValue, whole: JSONValue) -> float:
    """Share of the words of ``part`` found in ``whole`` (texts at any depth)."""
    wanted = Counter(_WORD.findall(" ".join(_strings(part)).casefold()))
    found = wanted & Counter(_WORD.findall(" ".join(_strings(whole)).casefold()))
    return sum(found.values()) / max(1, sum(wanted.values()))


def _strings(value: JSONValue) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def extraction_method(evidence: dict[str, str]) -> str:
    """``structured``, ``heuristic`` or ``structured+heuristic``, from a record's evidence."""
    sources = {part for value in evidence.values() for part in value.split("+")}
    structured, heuristic = bool(sources & STRUCTURED_SOURCES), bool(sources - STRUCTURED_SOURCES)
    if structured and heuristic:
        return "structured+heuristic"
    return "heuristic" if heuristic else "structured"


def missing_fields(schema: JSONObject, data: JSONValue, depth: int = 0) -> Iterator[str]:
    """Names of the schema's properties, at any object depth, that ``data`` lacks."""
    properties = schema.get("properties") or {}
    for name, sub in properties.items() if isinstance(properties, dict) else ():
        if not isinstance(sub, dict):
            continue
        value = data.get(name) if isinstance(data, dict) else None
        if is_empty(value):
            yield name
        if sub.get("properties") and depth < MAX_DEPTH and (
                is_empty(value) or isinstance(value, dict)):
            yield from missing_fields(sub, value, depth + 1)


def wanted_properties(schema: JSONObject, data: JSONObject) -> set[str]:
    """Lower-cased schema.org properties that could fill a missing field (a superset).

    The last step of each synonym path: ``in_stock`` wants ``availability``
    (``offers.availability``), not the whole offer.
    """
    wanted: set[str] = set()
    for name in missing_fields(schema, data):
        for variant in Shaper.name_variants(name):
            wanted.add("".join(variant))
            wanted.update(path.rsplit(".", 1)[-1].lower()
                          for path in syn.FIELD_PATHS.get("_".join(variant), ()))
    return wanted


def collect_facts(page: PageReader, wanted: set[str]) -> Facts:
    """What the finders that can serve ``wanted`` find; the first finder wins a property."""
    facts: Facts = {}
    for properties, find in FINDERS:
        if properties & wanted:
            for path, found in find(page).items():
                if not is_empty(found[0]):
                    facts.setdefault(path, found)
    return facts


def merge_facts(schema: JSONObject, data: JSONObject, evidence: dict[str, str],
                facts: Facts) -> tuple[JSONObject, dict[str, str]]:
    """Map ``facts`` onto ``schema`` and add what ``data`` lacks, with its evidence."""
    if not facts:
        return data, evidence
    shaper = Shaper({}, MAX_DEPTH)
    found = shaper.map_object(_node(facts), schema, depth=0)
    by_evidence: dict[str, Facts] = {}
    for path, fact in facts.items():
        by_evidence.setdefault(fact[1], {})[path] = fact
    data, evidence = dict(data), dict(evidence)
    for name, value in found.items():
        combined = _fill(data.get(name), value)
        if combined is data.get(name):
            continue
        data[name] = combined
        field: JSONObject = {"properties": {name: _properties(schema)[name]}}
        sources = "+".join(source for source, part in by_evidence.items()
                           if shaper.map_object(_node(part), field, depth=0)) or "heuristic"
        evidence[name] = f"{evidence[name]}+{sources}" if name in evidence else sources
    order = _property_names(schema)
    return ({k: data[k] for k in order if k in data},
            {k: evidence[k] for k in order if k in evidence})


def _node(facts: Facts) -> JSONObject:
    """A schema.org node from dotted paths (``offers.price`` -> ``{"offers": {...}}``)."""
    node: JSONObject = {"@type": "Thing"}
    for path, (value, _) in facts.items():
        *parents, last = path.split(".")
        target = node
        for parent in parents:
            target = cast(JSONObject, target.setdefault(parent, {}))  # paths only nest
        target[last] = cast(JSONValue, value)  # a text, number or list of texts; not changed
    return node


def _properties(schema: JSONObject) -> JSONObject:
    """The schema's ``properties`` (an object: :func:`fill_missing` is given object schemas)."""
    return cast(JSONObject, schema["properties"])


def _property_names(schema: JSONObject) -> list[str]:
    return list(_properties(schema))


def _fill(current: JSONValue, found: JSONValue) -> JSONValue:
    """``current`` plus what it lacks from ``found`` (objects completed leaf by leaf)."""
    if is_empty(current):
        return found
    if isinstance(current, dict) and isinstance(found, dict):
        missing = {k: v for k, v in found.items() if is_empty(current.get(k))}
        return {**current, **missing} if missing else current
    return current
