"""Turn what a user sends as a schema into one normalized JSON Schema.

Accepted: a JSON Schema (Draft 2020-12) describing an object, or a simple
field list ``[{"field": "price", "type": "number", "example": 9.99}]``.
Remote ``$ref``, recursion and absurd depth or size are refused before
anything is stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match

from batchscraper.exceptions import InvalidSchemaError
from batchscraper.profiles import PROFILE_PREFIX, profile_names, profile_schema

# field-list type names -> JSON Schema fragments
FIELD_TYPES: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "str": {"type": "string"},
    "text": {"type": "string"},
    "number": {"type": "number"},
    "float": {"type": "number"},
    "integer": {"type": "integer"},
    "int": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "bool": {"type": "boolean"},
    "date": {"type": "string", "format": "date"},
    "datetime": {"type": "string", "format": "date-time"},
    "date-time": {"type": "string", "format": "date-time"},
    "url": {"type": "string", "format": "uri"},
    "uri": {"type": "string", "format": "uri"},
    "email": {"type": "string", "format": "email"},
    "object": {"type": "object"},
    "array": {"type": "array"},
    "list": {"type": "array"},
}
FIELD_KEYS = {"field", "name", "type", "example", "description", "required", "items", "fields"}


@dataclass(frozen=True)
class SchemaLimits:
    """Bounds on what a user may send as a schema."""

    max_bytes: int = 65_536
    max_depth: int = 32  # JSON nesting levels, about 15 levels of nested objects
    max_properties: int = 500


def parse_schema(raw: Any, limits: SchemaLimits = SchemaLimits()) -> dict[str, Any]:
    """Return the normalized JSON Schema for ``raw``.

    ``raw`` is a dict, a field list, JSON text, or ``profile:<name>`` for a
    built-in schema (:mod:`batchscraper.profiles`).
    """
    if isinstance(raw, str) and raw.strip().lower().startswith(PROFILE_PREFIX):
        name = raw.strip()[len(PROFILE_PREFIX):]
        profile = profile_schema(name)
        if profile is None:
            raise InvalidSchemaError(
                f"unknown profile {name!r}; one of {', '.join(profile_names())}"
            )
        raw = profile
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidSchemaError(
                f"schema is not valid JSON: {exc.msg} at char {exc.pos}"
            ) from None
    if isinstance(raw, list):
        schema = fields_to_schema(raw)
    elif isinstance(raw, dict):
        schema = raw
    else:
        raise InvalidSchemaError("schema must be a JSON Schema object or a list of fields")
    _check_size(schema, limits)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        error = best_match([exc]) or exc
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise InvalidSchemaError(f"not a valid JSON Schema at {where}: {error.message}") from None
    if schema.get("type", "object") != "object" and "properties" not in schema:
        raise InvalidSchemaError('schema must describe an object: {"type": "object", ...}')
    _check_refs_and_depth(schema, schema, limits, depth=0, seen_refs=())
    return schema


def fields_to_schema(fields: list[Any]) -> dict[str, Any]:
    """Convert a field list to an object JSON Schema."""
    if not fields:
        raise InvalidSchemaError("field list is empty")
    properties: dict[str, Any] = {}
    required: list[str] = []
    for index, entry in enumerate(fields):
        name, prop, is_required = _field_to_property(entry, f"[{index}]")
        if name in properties:
            raise InvalidSchemaError(f"field {name!r} appears twice (entry {index})")
        properties[name] = prop
        if is_required:
            required.append(name)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def _field_to_property(entry: Any, where: str) -> tuple[str, dict[str, Any], bool]:
    if not isinstance(entry, dict):
        raise InvalidSchemaError(f"field entry {where} must be an object with 'field' and 'type'")
    unknown = set(entry) - FIELD_KEYS
    if unknown:
        raise InvalidSchemaError(f"field entry {where} has unknown keys: {sorted(unknown)}")
    name = entry.get("field", entry.get("name"))
    if not isinstance(name, str) or not name.strip():
        raise InvalidSchemaError(f"field entry {where} needs a non-empty 'field' name")
    type_name = str(entry.get("type", "string")).lower()
    if type_name not in FIELD_TYPES:
        raise InvalidSchemaError(
            f"field {name!r} has unknown type {type_name!r}; one of {sorted(FIELD_TYPES)}"
        )
    prop = dict(FIELD_TYPES[type_name])
    if prop["type"] == "array":
        prop["items"] = _items_schema(entry.get("items", "string"), f"{where}.items")
    if prop["type"] == "object" and "fields" in entry:
        prop.update(fields_to_schema(entry["fields"]))
    if "description" in entry:
        prop["description"] = str(entry["description"])
    if "example" in entry:
        prop["examples"] = [entry["example"]]
    return name, prop, bool(entry.get("required", False))


def _items_schema(items: Any, where: str) -> dict[str, Any]:
    if isinstance(items, str):
        if items.lower() not in FIELD_TYPES:
            raise InvalidSchemaError(f"field entry {where} has unknown item type {items!r}")
        return dict(FIELD_TYPES[items.lower()])
    if isinstance(items, list):
        return fields_to_schema(items)
    if isinstance(items, dict):
        return items
    raise InvalidSchemaError(f"field entry {where} must be a type name or a field list")


def _check_size(schema: dict[str, Any], limits: SchemaLimits) -> None:
    size = len(json.dumps(schema))
    if size > limits.max_bytes:
        raise InvalidSchemaError(f"schema is {size} bytes; the limit is {limits.max_bytes}")


def _check_refs_and_depth(
    node: Any, root: dict[str, Any], limits: SchemaLimits, depth: int, seen_refs: tuple[str, ...]
) -> None:
    """Walk the schema, following local refs, so recursion shows up as depth."""
    if depth > limits.max_depth:
        raise InvalidSchemaError(
            f"schema nests deeper than {limits.max_depth} levels (or refers to itself)"
        )
    if isinstance(node, list):
        for child in node:
            _check_refs_and_depth(child, root, limits, depth + 1, seen_refs)
        return
    if not isinstance(node, dict):
        return
    if len(node.get("properties", {}) or {}) > limits.max_properties:
        raise InvalidSchemaError(f"schema has more than {limits.max_properties} properties")
    ref = node.get("$ref")
    if isinstance(ref, str):
        if not ref.startswith("#"):
            raise InvalidSchemaError(f"remote $ref is not allowed: {ref!r}")
        if ref in seen_refs:
            raise InvalidSchemaError(f"schema refers to itself through {ref!r}")
        _check_refs_and_depth(
            _resolve_pointer(root, ref), root, limits, depth + 1, (*seen_refs, ref)
        )
    for key, child in node.items():
        if key not in ("$ref", "examples", "example", "enum", "const", "default"):
            _check_refs_and_depth(child, root, limits, depth + 1, seen_refs)


def _resolve_pointer(root: dict[str, Any], ref: str) -> Any:
    node: Any = root
    for part in ref.lstrip("#").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise InvalidSchemaError(f"$ref {ref!r} points at nothing in the schema")
    return node
