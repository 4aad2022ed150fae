"""Combining answers: chunks of one page, records of a list page, and the schema's shape.

Per chunk answers merge field by field: the first non-empty value wins for
scalars, arrays are the union in order without duplicates, objects merge
recursively. Keys the schema does not declare are dropped, and so are nulls
the schema does not allow (strict structured outputs make optional fields
nullable); strings longer than ``maxLength`` and arrays longer than
``maxItems`` are cut to size (an over-long optional array must not fail the
whole record), and the cut paths are reported.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from typing import TypeVar, overload

from batchscraper.extraction.coerce import schema_types
from batchscraper.jsontypes import JSONObject, JSONValue

T = TypeVar("T")


def is_empty(value: object) -> bool:
    """None, "", [], {} — and objects whose every field is empty."""
    if isinstance(value, dict):
        return all(is_empty(v) for v in value.values())
    if isinstance(value, list):
        return all(is_empty(v) for v in value)
    return value is None or (isinstance(value, str) and not value.strip())


def merge_values(first: JSONValue, second: JSONValue) -> JSONValue:
    """``first`` completed by ``second`` (first non-empty scalar, union of arrays)."""
    if is_empty(first):
        return second if not is_empty(second) else first
    if is_empty(second):
        return first
    if isinstance(first, dict) and isinstance(second, dict):
        merged = dict(first)
        for key, value in second.items():
            merged[key] = merge_values(merged.get(key), value)
        return merged
    if isinstance(first, list) and isinstance(second, list):
        return dedupe([*first, *second])
    return first


def merge_records(records: list[JSONObject]) -> JSONObject:
    """One record from per-chunk records of the same page."""
    merged: JSONObject = {}
    for record in records:
        for key, value in record.items():
            merged[key] = merge_values(merged.get(key), value)
    return merged


def dedupe(values: list[T]) -> list[T]:
    """``values`` in order, later duplicates (after normalization) removed."""
    seen: set[str] = set()
    out = []
    for value in values:
        key = identity(value)
        if key not in seen:
            seen.add(key)
            out.append(value)
    return out


def identity(value: object) -> str:
    """A normalized key for comparing values (records compare by all their fields)."""
    if isinstance(value, str):
        return normalize_text(value)
    if isinstance(value, dict):
        return json.dumps({k: identity(v) for k, v in value.items() if not is_empty(v)},
                          sort_keys=True)
    if isinstance(value, list):
        return json.dumps([identity(v) for v in value])
    return json.dumps(value, default=str)


def record_key(record: Mapping[str, object]) -> str:
    """What identifies a record of a list page: its first non-empty string field."""
    for value in record.values():
        if isinstance(value, str) and value.strip():
            return normalize_text(value)
    return identity(record)


def merge_record_lists(lists: list[list[JSONObject]], limit: int) -> list[JSONObject]:
    """Records of every chunk in page order; the same record seen twice (overlap) merged."""
    out: list[JSONObject] = []
    index: dict[str, int] = {}
    for records in lists:
        for record in records:
            key = record_key(record)
            if key in index:
                out[index[key]] = merge_records([out[index[key]], record])
            elif len(out) < limit:
                index[key] = len(out)
                out.append(record)
    return out


def normalize_text(text: str) -> str:
    """NFKC, casefold, collapsed whitespace."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()


@overload
def shape_to_schema(value: JSONObject, schema: object, trimmed: list[str] | None = None,
                    path: str = "") -> JSONObject: ...
@overload
def shape_to_schema(value: JSONValue, schema: object, trimmed: list[str] | None = None,
                    path: str = "") -> JSONValue: ...
def shape_to_schema(
    value: JSONValue, schema: object, trimmed: list[str] | None = None, path: str = ""
) -> JSONValue:
    """``value`` without undeclared keys or nulls the schema does not allow, cut to size.

    Paths of values cut to ``maxLength``/``maxItems`` are appended to ``trimmed``.
    """
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return value
        extra = schema.get("additionalProperties")
        out: JSONObject = {}
        for key, item in value.items():
            sub = properties.get(key)
            if sub is None:
                if extra is False or extra is None:
                    continue
                sub = extra if isinstance(extra, dict) else {}
            if item is None and not allows_null(sub):
                continue
            out[key] = shape_to_schema(item, sub, trimmed, f"{path}.{key}" if path else key)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        items = schema["items"]
        shaped = [shape_to_schema(item, items, trimmed, f"{path}[]") for item in value
                  if item is not None or allows_null(items)]
        return _cut(shaped, schema.get("maxItems"), trimmed, path)
    if isinstance(value, str):
        return _cut(value, schema.get("maxLength"), trimmed, path)
    return value


def _cut(value: str | list[JSONValue], limit: object, trimmed: list[str] | None, path: str
         ) -> str | list[JSONValue]:
    if not isinstance(limit, int) or isinstance(limit, bool) or len(value) <= limit:
        return value
    if trimmed is not None:
        trimmed.append(path)
    return value[:limit]


def allows_null(schema: object) -> bool:
    """Whether ``schema`` accepts null."""
    if not isinstance(schema, dict):
        return True
    if "null" in schema_types(schema):
        return True
    for key in ("anyOf", "oneOf"):
        if any(allows_null(option) for option in schema.get(key) or []):
            return True
    return not schema_types(schema) and not any(k in schema for k in ("anyOf", "oneOf", "$ref"))
