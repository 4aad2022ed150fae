"""Grounding: does a value the LLM returned actually appear on the page?

Each leaf is compared with the page's visible text after normalization:
short strings must appear as a substring, long strings must have nearly all
their words on the page, numbers must appear in any common spelling
(``1299.0`` matches ``1,299.00`` and ``1.299,00``), dates in any common form.
A number of a field named for a duration unit (``total_time_minutes``) may
also be a duration the page states in other units, or the sum of two
(``90`` from "1 hr 30 min", or from "Prep 30 min" and "Cook 1 hr").
Booleans and enum-like values cannot be checked that way and count as
grounded. A value that repeats the system instructions is never grounded.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

from batchscraper.extraction.coerce import (
    duration_unit,
    parse_date,
    parse_duration_seconds,
    parse_number,
)
from batchscraper.extraction.synonyms import DURATION_UNIT_SECONDS
from batchscraper.jsontypes import JSONObject, JSONValue
from batchscraper.llm.merge import is_empty, normalize_text
from batchscraper.llm.prompts import leaks_instructions

#: strings with more words than this are matched word by word
LONG_STRING_WORDS = 8
#: share of a long string's words that must be on the page
LONG_STRING_COVERAGE = 0.9
NUMBER_TOLERANCE = 0.005
_NUMBER = re.compile(r"\d[\d\s.,'\u00a0\u202f]*")
#: A duration as pages write it: ``1 hr 30 mins``, ``45 minutes``, ``2.5 hours``.
_DURATION = re.compile(
    r"(?:\d+(?:[.,]\d+)?\s*(?:d|days?|h|hrs?|hours?|m|mins?|minutes?|s|secs?|seconds?)\b"
    r"[\s,]*(?:and\s+)?)+", re.IGNORECASE)
#: Stated durations kept for sums of two (their number grows as its square).
MAX_DURATIONS = 40
_WORDS = re.compile(r"\w+")
_DATE_FORMATS = ("%B %d, %Y", "%b %d, %Y", "%d %B %Y", "%d %b %Y", "%B %d %Y", "%d.%m.%Y",
                 "%m/%d/%Y", "%d/%m/%Y", "%Y/%m/%d", "%d %B, %Y", "%b. %d, %Y")


@dataclass(frozen=True)
class PageIndex:
    """The page's visible text, prepared for grounding lookups."""

    text: str
    flat: str  # the words of the text, joined by single spaces (no punctuation)
    words: frozenset[str]
    numbers: tuple[float, ...]
    durations: tuple[float, ...] = ()  # seconds: each stated duration, and sums of two

    @classmethod
    def of(cls, text: str) -> PageIndex:
        normalized = normalize_text(text)
        numbers = []
        for match in _NUMBER.finditer(text):
            number = parse_number(match.group(0).strip(), lenient=True)
            if number is not None:
                numbers.append(number)
        stated = list(dict.fromkeys(
            seconds for seconds in map(parse_duration_seconds, (
                m.group(0) for m in _DURATION.finditer(text))) if seconds))[:MAX_DURATIONS]
        durations = {*stated, *(a + b for i, a in enumerate(stated) for b in stated[i + 1:])}
        words = _WORDS.findall(normalized)
        return cls(text=normalized, flat=" ".join(words), words=frozenset(words),
                   numbers=tuple(sorted(set(numbers))), durations=tuple(sorted(durations)))


def grounded(value: object, page: PageIndex, name: str = "") -> bool:
    """Whether every leaf of ``value`` (the value of field ``name``) can be found on the page."""
    if leaks_instructions(value):
        return False
    if isinstance(value, dict):
        return all(grounded(v, page, k) for k, v in value.items() if not is_empty(v))
    if isinstance(value, list):
        return all(grounded(v, page, name) for v in value if not is_empty(v))
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, (int, float)):
        return _number_on_page(float(value), page) or _duration_on_page(float(value), name, page)
    return _string_on_page(str(value), page)


def _duration_on_page(number: float, name: str, page: PageIndex) -> bool:
    unit = duration_unit(name)
    if unit is None or not math.isfinite(number):
        return False
    seconds = number * DURATION_UNIT_SECONDS[unit]
    return any(abs(candidate - seconds) <= max(seconds * NUMBER_TOLERANCE, 1)
               for candidate in page.durations)


def strip_ungrounded(value: JSONValue, page: PageIndex, name: str = "") -> JSONValue:
    """``value`` with ungrounded leaves set to None (list elements removed)."""
    if isinstance(value, dict):
        return {k: strip_ungrounded(v, page, k) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_ungrounded(v, page, name) for v in value if grounded(v, page, name)]
    return value if grounded(value, page, name) else None


def _number_on_page(number: float, page: PageIndex) -> bool:
    if not math.isfinite(number):
        return False
    tolerance = abs(number) * NUMBER_TOLERANCE
    return any(abs(candidate - number) <= tolerance for candidate in page.numbers)


def _string_on_page(text: str, page: PageIndex) -> bool:
    normalized = normalize_text(text)
    if not normalized:
        return True
    if normalized in page.text:
        return True
    words = _WORDS.findall(normalized)
    if len(words) > LONG_STRING_WORDS:
        found = sum(word in page.words for word in words)
        return found / len(words) >= LONG_STRING_COVERAGE
    date = parse_date(text) if any(ch.isdigit() for ch in text) else None
    if date is not None:
        return _date_on_page(date, page)
    number = parse_number(text)
    if number is not None and _number_on_page(number, page):
        return True
    return bool(words) and " ".join(words) in page.flat


def _date_on_page(date: dt.date, page: PageIndex) -> bool:
    spellings = {date.isoformat()}
    for fmt in _DATE_FORMATS:
        spelled = date.strftime(fmt)
        spellings.add(normalize_text(spelled))
        spellings.add(normalize_text(re.sub(r"\b0(\d)", r"\1", spelled)))
    return any(spelling in page.text for spelling in spellings)


#: name words of fields whose values are identifiers, copied from a page or absent
IDENTIFIER_WORDS = frozenset({
    "id", "sku", "gtin", "gtin8", "gtin12", "gtin13", "gtin14", "ean", "upc", "isbn", "issn",
    "mpn", "asin", "phone", "telephone", "fax", "mobile", "email", "mail", "zip", "postcode",
    "postal", "number", "vat", "iban", "doi", "url", "link", "href",
})
#: a number in such a unit is often converted from the page ("1 hr 30 min" -> 90 minutes)
CONVERTED_UNIT_WORDS = frozenset({"minutes", "minute", "mins", "min", "hours", "hour", "hrs",
                                  "seconds", "secs", "days", "weeks", "months", "years"})
_COPIED_FORMATS = frozenset({"date", "date-time", "time", "email", "uri", "url", "iri",
                             "uri-reference", "idn-email", "hostname", "ipv4", "ipv6"})


def must_be_copied(name: str, schema: object) -> bool:
    """Whether a field's value can only be copied from the page, never written.

    Numbers, dates, URLs, e-mail addresses and identifiers (SKU, ISBN, phone,
    ...): a value of such a field that is not on the page was invented. Free
    text (a summary, a title in other words) may legitimately be rephrased,
    and so may a number in a unit the page may not use (``total_time_minutes``
    from "1 hr 30 min"), enums, codes (``currency_code`` from "$") and booleans.
    """
    if not isinstance(schema, dict):
        return False
    options = [o for o in schema.get("anyOf", []) if isinstance(o, dict)
               and o.get("type") != "null"]
    if options:
        return any(must_be_copied(name, option) for option in options)
    types = schema.get("type")
    types = set(types) if isinstance(types, list) else {types}
    words = set(_WORDS.findall(_split_camel(name).lower()))
    if types & {"number", "integer"}:
        return not words & CONVERTED_UNIT_WORDS
    if schema.get("format") in _COPIED_FORMATS:
        return True
    if "array" in types:
        return must_be_copied(name, schema.get("items") or {})
    if "object" in types or "boolean" in types or "enum" in schema or "const" in schema:
        return False
    return bool(IDENTIFIER_WORDS & (words | {w[:-1] for w in words if w.endswith("s")}))


def _split_camel(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ")


def strip_invented(name: str, value: JSONValue, schema: object, page: PageIndex) -> JSONValue:
    """``value`` with the leaves that must be copied but are not on the page set to None.

    The ``grounding: auto`` rule: see :func:`must_be_copied`. List elements
    that are invented are removed; free text is left for the caller to flag.
    """
    node = _object_schema(schema)
    if isinstance(value, dict):
        properties = node.get("properties")
        if not isinstance(properties, dict):
            properties = {}
        return {key: strip_invented(key, sub, properties.get(key, {}), page)
                for key, sub in value.items()}
    if isinstance(value, list):
        items = node.get("items") or {}
        kept = [strip_invented(name, element, items, page) for element in value]
        return [element for element, original in zip(kept, value, strict=True)
                if (element is not None or original is None)
                and not (element == [] and original != [])]
    if value is None or isinstance(value, bool) or not must_be_copied(name, schema):
        return value
    return value if grounded(value, page, name) else None


def _object_schema(schema: object) -> JSONObject:
    """``schema``, or its first ``anyOf`` option that has properties or items."""
    if not isinstance(schema, dict):
        return {}
    for option in schema.get("anyOf", []):
        if isinstance(option, dict) and ("properties" in option or "items" in option):
            return option
    return schema
