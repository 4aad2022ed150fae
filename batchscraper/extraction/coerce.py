"""Best-effort, schema-guided coercion of extracted values before validation.

:func:`coerce_to_schema` walks a value alongside its JSON Schema and converts
what is cleanly convertible (``"$1,299.00"`` -> ``1299.0`` for a number,
``"https://schema.org/InStock"`` -> ``True`` for a boolean, ``"PT30M"`` -> ``30``
for a ``*_minutes`` integer, a lone scalar -> a one-element array, ...).
Anything it cannot convert is returned unchanged so that validation can report
it. It never raises.

The parsing helpers (:func:`parse_number`, :func:`parse_bool`,
:func:`parse_duration_seconds`, :func:`normalize_date`) are shared with the
structured-data mapper.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from batchscraper.extraction.patterns import PatternError, compile_pattern
from batchscraper.extraction.synonyms import DURATION_UNIT_SECONDS, UNIT_TOKENS
from batchscraper.jsontypes import JSONObject, JSONValue

logger = logging.getLogger(__name__)

JSON_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
DEFAULT_DURATION_UNIT = "minutes"
#: Ordering of JSON types tried when a value matches none of the declared ones.
COERCION_ORDER = ("number", "integer", "boolean", "string", "array", "object")

# --------------------------------------------------------------------------- numbers
_CURRENCY_SYMBOLS = "$€£¥₹₽₩₪₫₴₦₱₲₵₡₭₮฿¢"
_MINUS = "-\u2212"
_NUMBER_IN_TEXT = re.compile(r"[-+\u2212]?\d[\d\s.,'\u2019\u00a0\u202f]*")
_DECORATION = re.compile(
    rf"^[\s{_CURRENCY_SYMBOLS}]*(?:[A-Z]{{3}}|[A-Z]{{1,2}}\$|Rs|kr|zł|Kč|Ft|lei)?"
    rf"[\s{_CURRENCY_SYMBOLS}.]*$"
)
_UNIT_WORD = re.compile(r"^\s*[^\W\d_]+\.?(?:\s+[^\W\d_]+\.?)*\s*$")
_THOUSANDS_COMMA = re.compile(r"^[1-9]\d{0,2}(,\d{3})+$")
_THOUSANDS_DOT = re.compile(r"^[1-9]\d{0,2}(\.\d{3}){2,}$")
_SPACES = re.compile(r"[\s'\u2019\u00a0\u202f]")


def _parse_digits(digits: str) -> float | None:
    """Turn ``1,299.00`` / ``1.299,00`` / ``1 299`` / ``12,5`` into a float."""
    sign = -1.0 if digits[:1] in _MINUS else 1.0
    digits = _SPACES.sub("", digits.lstrip("+" + _MINUS)).rstrip(".,")
    if not digits:
        return None
    if "," in digits and "." in digits:
        decimal = "," if digits.rfind(",") > digits.rfind(".") else "."
        thousands = "." if decimal == "," else ","
        digits = digits.replace(thousands, "").replace(decimal, ".")
    elif "," in digits:
        if _THOUSANDS_COMMA.match(digits):
            digits = digits.replace(",", "")
        elif digits.count(",") == 1:
            digits = digits.replace(",", ".")
        else:
            return None
    elif digits.count(".") > 1:
        if not _THOUSANDS_DOT.match(digits):
            return None
        digits = digits.replace(".", "")
    try:
        value = float(digits)
    except ValueError:
        return None
    return sign * value if math.isfinite(value) else None


def parse_number(value: object, *, lenient: bool = False) -> float | None:
    """Parse a number out of ``value``.

    Strict mode (default) accepts plain numbers decorated with currency symbols
    or codes (``"$1,299.00"``, ``"1.299,00 €"``, ``"EUR 12"``) and a number
    followed by a unit word (``"4 servings"``, ``"53 kcal"``). ``lenient`` takes
    the first number anywhere in the text (``"Serves 4-6"`` -> 4).
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    match = _NUMBER_IN_TEXT.search(text)
    if not match:
        return None
    number = _parse_digits(match.group(0).strip())
    if number is None or lenient:
        return number
    before, after = text[: match.start()], text[match.end():]
    if after.startswith("/") or not _DECORATION.match(before):
        return None
    if _DECORATION.match(after) or _UNIT_WORD.match(after):
        return number
    return None


def to_integer(number: float | None) -> int | None:
    """``number`` as an int when it is integral (within float noise), else None."""
    if number is None or not math.isfinite(number):
        return None
    rounded = round(number)
    return int(rounded) if math.isclose(number, rounded, abs_tol=1e-9) else None


# --------------------------------------------------------------------------- booleans
_TRUE_WORDS = frozenset({
    "true", "yes", "y", "1", "on", "instock", "available", "limitedavailability", "onlineonly",
    "instoreonly", "inventoryavailable",
})
_FALSE_WORDS = frozenset({
    "false", "no", "n", "0", "off", "outofstock", "soldout", "unavailable", "discontinued",
    "notavailable", "preorder", "presale", "backorder",
})


def parse_bool(value: object) -> bool | None:
    """Booleans from ``true``/``yes``/``in stock``/``https://schema.org/InStock`` & co."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if not isinstance(value, str):
        return None
    word = value.strip().rstrip("/").rsplit("/", 1)[-1].casefold()
    word = re.sub(r"[\s_\-]", "", word)
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    return None


# --------------------------------------------------------------------------- durations
_ISO_DURATION = re.compile(
    r"^P(?:(?P<years>\d+(?:[.,]\d+)?)Y)?(?:(?P<months>\d+(?:[.,]\d+)?)M)?"
    r"(?:(?P<weeks>\d+(?:[.,]\d+)?)W)?(?:(?P<days>\d+(?:[.,]\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:[.,]\d+)?)H)?(?:(?P<minutes>\d+(?:[.,]\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?)?$",
    re.IGNORECASE,
)
_ISO_PART_SECONDS = {"years": 365 * 86400, "months": 30 * 86400, "weeks": 7 * 86400,
                     "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}
_HUMAN_DURATION = re.compile(
    r"(\d+(?:[.,]\d+)?)\s*(d|days?|h|hrs?|hours?|m|mins?|minutes?|s|secs?|seconds?)\b",
    re.IGNORECASE,
)
_HUMAN_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
#: A clock-style duration: ``1:15 h``, ``0:45``, ``1:30:00 hrs`` (hours first).
_CLOCK_DURATION = re.compile(
    r"^(\d{1,3}):([0-5]\d)(?::([0-5]\d))?\s*(?:h|hrs?|hours?|std\.?|u)?\.?$", re.IGNORECASE)


def parse_duration_seconds(value: object) -> float | None:
    """Seconds in an ISO-8601 duration (``PT1H30M``), a plain one (``1 hr 30 mins``) or a
    clock-style one (``1:15 h``)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    match = _ISO_DURATION.match(text)
    if match and text.upper() not in ("P", "PT") and not text.upper().endswith("T"):
        return sum(float(amount.replace(",", ".")) * _ISO_PART_SECONDS[part]
                   for part, amount in match.groupdict().items() if amount)
    clock = _CLOCK_DURATION.match(text)
    if clock:
        hours, minutes, seconds = (int(part or 0) for part in clock.groups())
        return hours * 3600 + minutes * 60 + seconds
    parts = _HUMAN_DURATION.findall(text)
    if not parts:
        return None
    return sum(float(amount.replace(",", ".")) * _HUMAN_UNIT_SECONDS[unit[0].lower()]
               for amount, unit in parts)


def duration_unit(field_name: str | None) -> str | None:
    """The duration unit a field name ends with (``cook_time_minutes`` -> minutes)."""
    if not field_name:
        return None
    last = re.split(r"[_\W]+|(?<=[a-z])(?=[A-Z])", field_name.strip())[-1].lower()
    unit = UNIT_TOKENS.get(last)
    return unit if unit in DURATION_UNIT_SECONDS else None


def parse_duration(value: object, unit: str = DEFAULT_DURATION_UNIT) -> float | None:
    """A duration string converted to ``unit`` (minutes by default)."""
    seconds = parse_duration_seconds(value)
    if seconds is None:
        return None
    return seconds / DURATION_UNIT_SECONDS.get(unit, DURATION_UNIT_SECONDS[DEFAULT_DURATION_UNIT])


# --------------------------------------------------------------------------- dates
_ISO_DATE = re.compile(r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:$|[T\s])")
_COMPACT_DATE = re.compile(r"^\s*(\d{4})(\d{2})(\d{2})(?:$|T)")
_SLASH_DATE = re.compile(r"^\s*(\d{1,2})/(\d{1,2})/(\d{4})\s*$")
_ORDINAL = re.compile(r"(\d)(st|nd|rd|th)\b", re.IGNORECASE)
_TEXT_DATE_FORMATS = (
    "%B %d, %Y", "%b %d, %Y", "%b. %d, %Y", "%B %d %Y", "%b %d %Y", "%d %B %Y", "%d %b %Y",
    "%d %B, %Y", "%d %b, %Y", "%d. %B %Y", "%Y/%m/%d", "%d.%m.%Y", "%Y.%m.%d", "%A, %B %d, %Y",
    "%a, %b %d, %Y", "%A %d %B %Y",
)
_MONTHS_IN_YEAR = 12


def parse_date(value: object) -> dt.date | None:
    """The calendar date in ``value`` when it is unambiguous, else None.

    ISO dates/datetimes keep the date as written (no timezone shift). US/EU
    slash dates are accepted only when one side is > 12.
    """
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    for pattern in (_ISO_DATE, _COMPACT_DATE):
        match = pattern.match(text)
        if match:
            return _safe_date(*map(int, match.groups()))
    match = _SLASH_DATE.match(text)
    if match:
        first, second, year = map(int, match.groups())
        if first > _MONTHS_IN_YEAR >= second:
            return _safe_date(year, second, first)
        if second > _MONTHS_IN_YEAR >= first:
            return _safe_date(year, first, second)
        return None
    cleaned = re.sub(r"\s+", " ", _ORDINAL.sub(r"\1", text))
    for fmt in _TEXT_DATE_FORMATS:
        try:
            return dt.datetime.strptime(cleaned, fmt).date()
        except ValueError:
            continue
    try:
        return parsedate_to_datetime(text).date()
    except (TypeError, ValueError, IndexError):
        return None


def _safe_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def normalize_date(value: object) -> str | None:
    """``value`` as ``YYYY-MM-DD`` when it holds an unambiguous date, else None."""
    date = parse_date(value)
    return date.isoformat() if date else None


# --------------------------------------------------------------------------- schema walk
def schema_types(schema: Mapping[str, object]) -> list[str]:
    """Declared JSON types of ``schema`` in order; inferred when ``type`` is missing."""
    declared = schema.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list):
        return [t for t in declared if isinstance(t, str)]
    if "properties" in schema:
        return ["object"]
    if "items" in schema:
        return ["array"]
    return []


def _matches(value: object, json_type: str) -> bool:
    if json_type == "null":
        return value is None
    if json_type == "boolean":
        return isinstance(value, bool)
    if json_type == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if json_type == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if json_type == "string":
        return isinstance(value, str)
    if json_type == "array":
        return isinstance(value, list)
    if json_type == "object":
        return isinstance(value, dict)
    return False


def _convert(value: JSONValue, json_type: str, schema: JSONObject, name: str | None) -> JSONValue:
    """``value`` converted to ``json_type``, or None when it cannot be."""
    if json_type == "number":
        if isinstance(value, str) and duration_unit(name):
            return parse_duration(value, duration_unit(name) or DEFAULT_DURATION_UNIT)
        return parse_number(value)
    if json_type == "integer":
        if isinstance(value, str) and _ISO_DURATION.match(value.strip()):
            minutes = parse_duration(value, duration_unit(name) or DEFAULT_DURATION_UNIT)
            return round(minutes) if minutes is not None else None
        return to_integer(parse_number(value))
    if json_type == "boolean":
        return parse_bool(value)
    if json_type == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            integral = to_integer(float(value))
            return str(integral) if integral is not None else str(value)
        return None
    if json_type == "array" and not isinstance(value, list):
        return [_coerce(value, schema.get("items") or {}, name)]
    return None


def _coerce(value: JSONValue, schema: JSONValue, name: str | None = None) -> JSONValue:
    if value is None or not isinstance(schema, dict):
        return value
    for key in ("anyOf", "oneOf"):
        listed = schema.get(key) or []
        options = [s for s in listed if isinstance(s, dict)] if isinstance(listed, list) else []
        if options:
            return _coerce_options(value, options, name)
    types = schema_types(schema)
    if isinstance(value, dict) and (not types or "object" in types):
        return _coerce_object(value, schema)
    if isinstance(value, list) and (not types or "array" in types):
        items = schema.get("items")
        return [_coerce(item, items, name) for item in value] if isinstance(items, dict) else value
    if isinstance(value, str) and "string" in types:
        return _coerce_string(value, schema)
    if isinstance(value, float) and "integer" in types and "number" not in types:
        return to_integer(value) if value.is_integer() else value
    if not types or any(_matches(value, t) for t in types):
        return value
    for json_type in sorted(types, key=lambda t: COERCION_ORDER.index(t)
                            if t in COERCION_ORDER else len(COERCION_ORDER)):
        converted = _convert(value, json_type, schema, name)
        if converted is not None:
            return converted
    return value


def _coerce_options(value: JSONValue, options: list[JSONObject], name: str | None) -> JSONValue:
    for option in options:
        types = schema_types(option)
        if types and any(_matches(value, t) for t in types):
            return _coerce(value, option, name)
    for option in options:
        if schema_types(option) != ["null"]:
            return _coerce(value, option, name)
    return value


def _coerce_object(value: JSONObject, schema: JSONObject) -> JSONObject:
    given = schema.get("properties")
    properties = given if isinstance(given, dict) else {}
    extra = schema.get("additionalProperties")
    out: JSONObject = {}
    for key, item in value.items():
        sub = properties.get(key, extra if isinstance(extra, dict) else None)
        out[key] = _coerce(item, sub, key) if isinstance(sub, dict) else item
    return out


def repair_pattern(value: str, schema: Mapping[str, object]) -> str:
    """``value`` trimmed or upper-cased when that makes it match the schema ``pattern``."""
    pattern = schema.get("pattern")
    if not isinstance(pattern, str):
        return value
    try:
        regex = compile_pattern(pattern)
    except PatternError:
        return value
    if regex.search(value):
        return value
    for candidate in (value.strip(), value.strip().upper()):
        if regex.search(candidate):
            return candidate
    return value


def _coerce_string(value: str, schema: Mapping[str, object]) -> str:
    if schema.get("format") == "date":
        return normalize_date(value) or value
    value = repair_pattern(value, schema)
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        wanted = re.sub(r"[\s_\-]", "", value.rstrip("/").rsplit("/", 1)[-1]).casefold()
        for option in enum:
            if isinstance(option, str) and re.sub(r"[\s_\-]", "", option).casefold() == wanted:
                return option
    return value


def coerce_to_schema(data: JSONValue, schema: JSONObject) -> JSONValue:
    """Coerce ``data`` towards ``schema``; unconvertible values are left as they are.

    Handles nested objects and arrays, ``type`` lists such as
    ``["number", "null"]``, ``anyOf``/``oneOf`` and ``format: date``. Never raises.
    """
    try:
        return _coerce(data, schema)
    except Exception:
        logger.debug("coercion failed; returning data unchanged", exc_info=True)
        return data
