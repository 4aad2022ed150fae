"""Turn what a user sends as a schema into one normalized JSON Schema.

Accepted: a JSON Schema (Draft 2020-12) describing an object, or a simple
field list ``[{"field": "price", "type": "number", "example": 9.99}]``.
Remote ``$ref``, recursion, absurd depth or size, and patterns RE2 cannot run
are refused before anything is stored, every problem listed. ``$ref`` is
resolved the way jsonschema resolves it at run time (the ``referencing``
library, against the nearest ``$id``), so a schema accepted here validates.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012, Schema

from batchscraper.exceptions import InvalidSchemaError
from batchscraper.extraction.patterns import PatternError, compile_pattern, pattern_problem
from batchscraper.extraction.validation import subschema_parts
from batchscraper.inputs.profiles import PROFILE_PREFIX, profile_names, profile_schema
from batchscraper.jsontypes import JSONObject, JSONValue

if TYPE_CHECKING:
    from referencing._core import Resolver  # not exported by the package itself

# field-list type names -> JSON Schema fragments
FIELD_TYPES: dict[str, JSONObject] = {
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
DIALECTS = ("https://json-schema.org/draft/2020-12/schema",
            "https://json-schema.org/draft/2020-12/schema#")
MAX_REPORTED_PROBLEMS = 20
REF_KEYWORDS = ("$ref", "$dynamicRef")
# a root schema with none of these describes no field an extraction could fill
FIELD_KEYWORDS = ("properties", "patternProperties", "additionalProperties", "allOf", "anyOf",
                  "oneOf", "then", "dependentSchemas", *REF_KEYWORDS)


@dataclass(frozen=True)
class SchemaLimits:
    """Bounds on what a user may send as a schema."""

    max_bytes: int = 65_536
    max_depth: int = 32  # JSON nesting levels, about 15 levels of nested objects
    max_properties: int = 500


def parse_schema(raw: object, limits: SchemaLimits = SchemaLimits()) -> JSONObject:
    """Return the normalized JSON Schema for ``raw``.

    ``raw`` is a dict, a field list, JSON text, or ``profile:<name>`` for a
    built-in schema (:mod:`batchscraper.inputs.profiles`). Nesting too deep for any
    recursive step (decoding, the size and metaschema checks) is refused too.
    """
    try:
        return _parse(raw, limits)
    except RecursionError:
        raise InvalidSchemaError(f"schema nests deeper than {limits.max_depth} levels") from None


def _parse(raw: object, limits: SchemaLimits) -> JSONObject:
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
    _check_nesting(schema, limits)
    _refuse(_metaschema_problems(schema), lead="not a valid JSON Schema: ")
    _refuse(_SchemaWalk(schema, limits).problems())
    if schema.get("type", "object") != "object" and "properties" not in schema:
        raise InvalidSchemaError('schema must describe an object: {"type": "object", ...}')
    if not any(schema.get(keyword) for keyword in FIELD_KEYWORDS):
        raise InvalidSchemaError(
            'schema names no fields, so nothing could be extracted: give "properties"'
            ' ({"type": "object", "properties": {"name": {"type": "string"}}}) or a field list'
        )
    return schema


def fields_to_schema(fields: Sequence[object]) -> JSONObject:
    """Convert a field list to an object JSON Schema."""
    if not fields:
        raise InvalidSchemaError("field list is empty")
    properties: JSONObject = {}
    required: list[JSONValue] = []
    for index, entry in enumerate(fields):
        name, prop, is_required = _field_to_property(entry, f"[{index}]")
        if name in properties:
            raise InvalidSchemaError(f"field {name!r} appears twice (entry {index})")
        properties[name] = prop
        if is_required:
            required.append(name)
    schema: JSONObject = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def _field_to_property(entry: object, where: str) -> tuple[str, JSONObject, bool]:
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


def _items_schema(items: object, where: str) -> JSONObject:
    if isinstance(items, str):
        if items.lower() not in FIELD_TYPES:
            raise InvalidSchemaError(f"field entry {where} has unknown item type {items!r}")
        return dict(FIELD_TYPES[items.lower()])
    if isinstance(items, list):
        return fields_to_schema(items)
    if isinstance(items, dict):
        return items
    raise InvalidSchemaError(f"field entry {where} must be a type name or a field list")


def _check_size(schema: JSONObject, limits: SchemaLimits) -> None:
    size = len(json.dumps(schema))
    if size > limits.max_bytes:
        raise InvalidSchemaError(f"schema is {size} bytes; the limit is {limits.max_bytes}")


def _check_nesting(schema: JSONObject, limits: SchemaLimits) -> None:
    """Refuse absurd nesting before anything recursive (the metaschema check) sees it."""
    stack: list[tuple[JSONValue, bool, int]] = [(schema, True, 0)]
    while stack:
        node, is_schema, depth = stack.pop()
        if depth > limits.max_depth:
            raise InvalidSchemaError(f"schema nests deeper than {limits.max_depth} levels")
        stack.extend((child, child_is_schema, depth + 1)
                     for _, child, child_is_schema in subschema_parts(node, is_schema))


def _refuse(problems: list[dict[str, str]], lead: str = "") -> None:
    """Raise one INVALID_SCHEMA naming the first problem; ``details`` lists them all."""
    if not problems:
        return
    first = problems[0]
    count = f"; {len(problems)} problems in all" if len(problems) > 1 else ""
    raise InvalidSchemaError(
        f"{lead}{first['message']} (at {first['path'] or '(root)'}{count})",
        details=problems[:MAX_REPORTED_PROBLEMS],
    )


# -- the Draft 2020-12 metaschema, with patterns checked by RE2 ----------------------

_SCHEMA_FORMATS = FormatChecker()
_SCHEMA_FORMATS.checkers = {**Draft202012Validator.FORMAT_CHECKER.checkers,
                            "regex": (compile_pattern, PatternError)}
_METASCHEMA = Draft202012Validator(Draft202012Validator.META_SCHEMA,
                                   format_checker=_SCHEMA_FORMATS)


def _metaschema_problems(schema: JSONObject) -> list[dict[str, str]]:
    """Every place where ``schema`` breaks the metaschema (a ``pattern`` RE2 refuses too)."""
    problems = []
    for error in _METASCHEMA.iter_errors(schema):
        best = best_match([error]) or error
        problems.append({"path": _where(best.absolute_path), "message": _readable(best)})
    return problems


def _readable(error: ValidationError) -> str:
    if error.validator == "format" and error.validator_value == "regex":
        return f"pattern {error.instance!r} is not supported: {pattern_problem(error.instance)}"
    return error.message


def _where(path: Iterable[str | int]) -> str:
    return "/".join(str(part) for part in path)


# -- refs, depth and dialects, the way jsonschema will see them ----------------------


class _SchemaWalk:
    """One walk over a metaschema-valid schema, following every ``$ref`` as jsonschema would.

    Depth is counted in JSON nesting levels with refs expanded (a ref is one
    more level), so recursion shows up as depth or as a ref met again on its
    own chain. Each ref target is walked once; later visits reuse its height.
    Problems are reported where they are in the document.
    """

    def __init__(self, root: JSONObject, limits: SchemaLimits) -> None:
        self.root = root
        self.limits = limits
        self._locations = dict(_locations(root))
        self._problems: dict[tuple[str, str], None] = {}  # ordered, without repeats
        self._heights: dict[int, int] = {}  # id(ref target) -> levels below it
        self._keywords: set[str] = set()

    def problems(self) -> list[dict[str, str]]:
        """What is wrong with the schema (empty when nothing is)."""
        resolver = Registry().resolver_with_root(DRAFT202012.create_resource(self.root))
        if self._height(self.root, resolver, depth=0, chain=(), entered=True) > \
                self.limits.max_depth:
            self._add(self.root, None, f"schema nests deeper than {self.limits.max_depth}"
                                       " levels (or refers to itself)")
        if {"unevaluatedProperties", "patternProperties"} <= self._keywords:
            self._add(self.root, None,
                      "unevaluatedProperties cannot be combined with patternProperties")
        return [{"path": path, "message": message} for path, message in self._problems]

    def _add(self, node: JSONValue, key: str | None, message: str) -> None:
        path = self._locations.get(id(node), ())
        self._problems[_where((*path, key) if key else path), message] = None

    def _height(self, node: object, resolver: Resolver[Schema], depth: int,
                chain: tuple[int, ...], entered: bool = False, is_schema: bool = True) -> int:
        """Levels below ``node`` with refs expanded (cut off past the depth limit).

        ``is_schema`` is False for a map from names to subschemas (the value of
        ``properties``, ``$defs``, ...), whose keys are names, not keywords.
        """
        if depth > self.limits.max_depth or not isinstance(node, (dict, list)):
            return 0
        heights = []
        if isinstance(node, dict) and is_schema:
            if isinstance(node.get("$id"), str) and not entered:
                resolver = resolver.in_subresource(DRAFT202012.create_resource(node))
            self._check_node(node)
            heights = [self._ref_height(node, key, resolver, depth, chain)
                       for key in REF_KEYWORDS if isinstance(node.get(key), str)]
        heights += [self._height(child, resolver, depth + 1, chain, is_schema=child_is_schema)
                    for key, child, child_is_schema in subschema_parts(node, is_schema)
                    if not (is_schema and key in REF_KEYWORDS)]
        return 1 + max(heights, default=0)

    def _ref_height(self, node: JSONObject, key: str, resolver: Resolver[Schema], depth: int,
                    chain: tuple[int, ...]) -> int:
        ref = cast(str, node[key])  # _height looks up string refs only
        try:
            resolved = resolver.lookup(ref)
        except Unresolvable as exc:
            self._add(node, key, _unresolvable(ref, exc))
            return 0
        target = id(resolved.contents)
        if target in chain or resolved.contents is node:
            self._add(node, key, f"schema refers to itself through {ref!r}")
            return 0
        if target not in self._heights:
            self._heights[target] = self._height(
                resolved.contents, resolved.resolver, depth + 1, (*chain, target), entered=True
            )
        return 1 + self._heights[target]

    def _check_node(self, node: JSONObject) -> None:
        self._keywords.update(key for key in ("unevaluatedProperties", "patternProperties")
                              if key in node)
        properties = node.get("properties")
        if isinstance(properties, dict) and len(properties) > self.limits.max_properties:
            self._add(node, None, f"schema has more than {self.limits.max_properties} properties")
        dialect = node.get("$schema")
        if isinstance(dialect, str) and dialect not in DIALECTS:
            self._add(node, "$schema",
                      f"schemas are Draft 2020-12 ({DIALECTS[0]}); this names {dialect!r}")


def _locations(root: JSONValue) -> Iterator[tuple[int, tuple[str | int, ...]]]:
    """(id, path) of every object and array of the schema outside data keywords."""
    stack: list[tuple[JSONValue, bool, tuple[str | int, ...]]] = [(root, True, ())]
    while stack:
        node, is_schema, path = stack.pop()
        yield id(node), path
        stack.extend((child, child_is_schema, (*path, key))
                     for key, child, child_is_schema in subschema_parts(node, is_schema)
                     if isinstance(child, (dict, list)))


def _unresolvable(ref: str, exc: Unresolvable) -> str:
    """Why ``ref`` does not resolve: outside the schema (remote) or pointing at nothing."""
    if type(exc) is Unresolvable:
        return f"remote $ref is not allowed: {ref!r}; only the schema's own parts are used"
    return (f"$ref {ref!r} points at nothing in the schema; refs resolve against"
            " the nearest enclosing $id")

