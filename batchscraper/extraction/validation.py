"""Schema checks shared by the extract and validate pipelines, compiled once per batch.

Records come from pages anyone can write, schemas from any user, so the
validator is jsonschema's Draft 2020-12 one with the keywords that can take
super-linear time replaced: ``pattern``, ``patternProperties`` and
``additionalProperties`` match with RE2 (linear time, no backtracking) and
``uniqueItems`` compares canonical forms in a set instead of every pair.
Every keyword also checks a per-call deadline, so a costly schema and record
end in ``VALIDATION_TIMEOUT`` instead of holding a thread for good.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypedDict, cast

import attrs
from bson.dbref import DBRef
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from referencing import Registry
from scrapy.settings import BaseSettings

from batchscraper.exceptions import BatchError, ValidationFailedError, ValidationTimeoutError
from batchscraper.extraction.coerce import coerce_to_schema
from batchscraper.extraction.patterns import compile_pattern
from batchscraper.jsontypes import JSONObject, JSONValue
from batchscraper.llm.merge import allows_null, is_empty

MAX_CACHED_CHECKERS = 32
MAX_MESSAGE_CHARS = 300
#: Keywords whose values are data, not subschemas (in a schema object only).
DATA_KEYWORDS = frozenset({"enum", "const", "examples", "example", "default"})
#: Keywords whose values map names or patterns to subschemas: every key there is a
#: name (a property may be called ``enum``), every value a schema.
SCHEMA_MAP_KEYWORDS = frozenset({"properties", "patternProperties", "dependentSchemas",
                                 "$defs", "definitions", "dependencies"})

#: A jsonschema keyword function: (validator, the keyword's value, instance, schema).
Keyword = Callable[[Draft202012Validator, Any, object, JSONObject], Iterator[ValidationError]]


class RecordError(TypedDict):
    """One jsonschema error of a record: which record, where in it, and what is wrong."""

    record: int
    path: str
    message: str


@dataclass(frozen=True)
class ValidationSettings:
    """How long validating one record may take (``BATCH_VALIDATION_TIMEOUT``, seconds), and
    how large a record without a schema may be (``BATCH_FREE_FORM_MAX_BYTES``)."""

    timeout: float
    free_form_max_bytes: int = 65_536

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> ValidationSettings:
        return cls(timeout=settings.getfloat("BATCH_VALIDATION_TIMEOUT"),
                   free_form_max_bytes=settings.getint("BATCH_FREE_FORM_MAX_BYTES"))


# -- keywords --------------------------------------------------------------------------

#: (monotonic deadline, the seconds it was set for) of the validation running in this context
_LIMIT: ContextVar[tuple[float, float]] = ContextVar("validation_limit",
                                                     default=(math.inf, math.inf))


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Validation in this block ends by ``seconds`` from now (or an enclosing block's end)."""
    deadline = math.inf if seconds is None else time.monotonic() + seconds
    if deadline >= _LIMIT.get()[0]:
        yield
        return
    token = _LIMIT.set((deadline, seconds or 0.0))
    try:
        yield
    finally:
        _LIMIT.reset(token)


def _bounded(keyword: Keyword) -> Keyword:
    """``keyword`` that first checks the deadline: jsonschema calls one per subschema visit."""

    def check(validator: Draft202012Validator, value: object, instance: object,
              schema: JSONObject) -> Iterator[ValidationError]:
        deadline, seconds = _LIMIT.get()
        if time.monotonic() > deadline:
            raise ValidationTimeoutError(
                f"validating the record took longer than {seconds:g} s (BATCH_VALIDATION_TIMEOUT)"
            )
        return keyword(validator, value, instance, schema)

    return check


def _pattern(validator: Draft202012Validator, pattern: str, instance: object,
             schema: JSONObject) -> Iterator[ValidationError]:
    if isinstance(instance, str) and not compile_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Draft202012Validator, patterns: JSONObject, instance: object, schema: JSONObject
) -> Iterator[ValidationError]:
    if not isinstance(instance, dict):
        return
    for pattern, subschema in patterns.items():
        regex = compile_pattern(pattern)
        for name, value in instance.items():
            if regex.search(name):
                yield from validator.descend(value, subschema, path=name, schema_path=pattern)


def _additional_names(instance: JSONObject, schema: JSONObject) -> list[str]:
    """Names matched by neither ``properties`` nor a ``patternProperties`` pattern."""
    named = schema.get("properties", {})
    named = named if isinstance(named, dict) else {}
    given = schema.get("patternProperties", {})
    patterns = [compile_pattern(p) for p in given] if isinstance(given, dict) else []
    return [name for name in instance if name not in named
            and not any(regex.search(name) for regex in patterns)]


def _additional_properties(
    validator: Draft202012Validator, additional: JSONValue, instance: object, schema: JSONObject
) -> Iterator[ValidationError]:
    if not isinstance(instance, dict):
        return
    extras = _additional_names(instance, schema)
    if validator.is_type(additional, "object"):
        for name in extras:
            yield from validator.descend(instance[name], additional, path=name)
    elif not additional and extras:
        listed = ", ".join(repr(name) for name in sorted(extras))
        yield ValidationError(f"Additional properties are not allowed ({listed} unexpected)")


def canonical(value: object) -> tuple[str, object]:
    """A hashable form equal for values JSON Schema calls equal.

    ``1`` and ``1.0`` are equal (Python hashes them alike), ``true`` and ``1``
    are not, objects compare by key and value whatever the order, arrays by
    position.
    """
    if isinstance(value, bool) or value is None:
        return ("literal", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, dict):
        return ("object", frozenset((key, canonical(item)) for key, item in value.items()))
    if isinstance(value, (list, tuple)):
        return ("array", tuple(canonical(item) for item in value))
    return ("other", repr(value))


def _unique_items(validator: Draft202012Validator, unique: JSONValue, instance: object,
                  schema: JSONObject) -> Iterator[ValidationError]:
    if not unique or not isinstance(instance, list):
        return
    first_at: dict[tuple[str, object], int] = {}
    for index, item in enumerate(instance):
        earlier = first_at.setdefault(canonical(item), index)
        if earlier != index:
            yield ValidationError(f"items {earlier} and {index} are equal; uniqueItems is set")
            return


_REPLACED: dict[str, Keyword] = {
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
    "uniqueItems": _unique_items,
}
SafeValidator: type[Draft202012Validator] = validators.extend(
    Draft202012Validator,
    validators={name: _bounded(_REPLACED.get(name, keyword))
                for name, keyword in Draft202012Validator.VALIDATORS.items()},
)


def _evolve_in_class(validator: Draft202012Validator, **changes: Any) -> Draft202012Validator:
    """``validator`` with ``changes``, of its own class whatever the new schema's ``$schema``.

    jsonschema's ``evolve`` (called for every subschema it descends into,
    ``$ref`` targets included) switches to the stock class of the draft a
    ``$schema`` names: Python's regex engine, quadratic ``uniqueItems`` and
    no deadline for the rest of that subtree.
    """
    return attrs.evolve(validator, **changes)


SafeValidator.evolve = _evolve_in_class


def subschema_parts(node: JSONValue, is_schema: bool = True
                    ) -> Iterator[tuple[str | int, JSONValue, bool]]:
    """``(key, child, child_is_schema)`` for each child of ``node`` that may hold subschemas.

    In a schema object the values of :data:`DATA_KEYWORDS` are data and left
    out, and the value of a :data:`SCHEMA_MAP_KEYWORDS` keyword is a map
    (``is_schema`` False) whose every value is a schema, whatever its name:
    ``properties/enum`` is a subschema.
    """
    if isinstance(node, list):
        yield from ((index, child, True) for index, child in enumerate(node))
    elif isinstance(node, dict) and not is_schema:
        yield from ((key, child, True) for key, child in node.items())
    elif isinstance(node, dict):
        yield from ((key, child, key not in SCHEMA_MAP_KEYWORDS)
                    for key, child in node.items() if key not in DATA_KEYWORDS)


def without_dialects(node: JSONValue, is_schema: bool = True) -> JSONValue:
    """``node`` without the ``$schema`` keyword of any of its schema objects.

    The validator never changes class on a ``$schema`` (:func:`_evolve_in_class`);
    without them the ``referencing`` library also resolves every ``$ref`` and
    ``$id`` as Draft 2020-12, the way :mod:`batchscraper.inputs.schemas` checked them.
    Submitted schemas may only name Draft 2020-12, so this changes nothing else.
    """
    cleaned = {key: without_dialects(child, child_is_schema)
               for key, child, child_is_schema in subschema_parts(node, is_schema)}
    if isinstance(node, list):
        return [cleaned[index] for index in range(len(node))]
    if not isinstance(node, dict):
        return node
    return {key: cleaned.get(key, child) for key, child in node.items()
            if not (is_schema and key == "$schema" and isinstance(child, str))}


# -- the checker -------------------------------------------------------------------------


class RecordChecker:
    """A batch schema's compiled validator, and what the extract pipeline asks of it.

    Each check runs within ``timeout`` seconds (None: no limit) and raises
    :class:`ValidationTimeoutError` past it; any other failure of the
    validator itself becomes :class:`ValidationFailedError`, so an item
    always ends with a code.
    """

    def __init__(self, schema: JSONObject, timeout: float | None = None) -> None:
        self.schema = schema
        self.timeout = timeout
        self.validator = SafeValidator(
            without_dialects(schema), format_checker=Draft202012Validator.FORMAT_CHECKER,
            registry=Registry(),  # nothing is ever retrieved: only the schema's own resources
        )
        properties = schema.get("properties") or {}
        required = schema.get("required") or []
        self.properties: JSONObject = dict(properties) if isinstance(properties, dict) else {}
        self.required: list[str] = [
            name for name in required if isinstance(name, str) and name in self.properties
        ] if isinstance(required, list) else []

    @contextlib.contextmanager
    def bounded(self) -> Iterator[None]:
        """Checks in this block share one time limit and fail with an item error code."""
        with time_limit(self.timeout):
            try:
                yield
            except BatchError:
                raise
            except Exception as exc:
                raise ValidationFailedError(
                    f"the schema could not be applied to the record: "
                    f"{type(exc).__name__}: {exc}"[:MAX_MESSAGE_CHARS]
                ) from exc

    def _iter_errors(self, record: JSONValue) -> list[ValidationError]:
        with self.bounded():
            return list(self.validator.iter_errors(record))

    def errors(self, record: JSONValue, number: int = 0) -> list[RecordError]:
        """jsonschema errors of one (coerced) record: ``{record, path, message}``."""
        return [
            {
                "record": number,
                "path": "/".join(str(p) for p in error.absolute_path),
                "message": error.message,
            }
            for error in self._iter_errors(record)
        ]

    def invalid_fields(self, record: JSONValue) -> set[str]:
        """Top-level fields that are missing although required, or whose value is invalid."""
        fields = record if isinstance(record, dict) else {}
        bad = {name for name in self.required if is_empty(fields.get(name))}
        for error in self._iter_errors(record):
            if error.absolute_path:
                bad.add(str(error.absolute_path[0]))
        return bad & set(self.properties)

    def fields_to_ask(self, record: JSONObject, complete: bool = False) -> set[str]:
        """What an LLM should fill: every field not validly filled, when any is needed.

        Empty when the record already satisfies the schema — every required
        field filled and valid (or, for a schema without ``required``, every
        field filled) — unless ``complete``: then every field still empty or
        invalid is asked for (a record guessed from the page's text, not from
        its structured data, is worth completing).
        """
        coerced = coerce_to_schema(record, self.schema)
        invalid = self.invalid_fields(coerced)
        filled = coerced if isinstance(coerced, dict) else {}
        unfilled = {name for name in self.properties if is_empty(filled.get(name))}
        needed = invalid if self.required and not complete else invalid | unfilled
        if not needed and record:
            return set()
        return invalid | unfilled

    def valid_values(self, record: JSONObject, ask: set[str]) -> JSONObject:
        """The fields of ``record`` worth keeping next to an LLM's answer for ``ask``."""
        invalid = self.invalid_fields(coerce_to_schema(record, self.schema))
        return {name: value for name, value in record.items() if name not in invalid
                and (name not in ask or not is_empty(value))}

    def with_unstated_nulls(self, record: JSONObject) -> JSONObject:
        """``record`` with ``null`` for each required field it lacks whose schema allows null.

        A required but nullable field asks to be told when the page does not
        state the value; nested objects (and objects in arrays) get the same.
        """
        # an object stays an object: only its fields (and theirs) are filled
        return cast(JSONObject, _with_nulls(record, self.schema))

    def sub_schema(self, fields: set[str]) -> JSONObject:
        """The schema restricted to ``fields`` (what the LLM is asked for)."""
        sub: JSONObject = {
            "type": "object",
            "properties": {name: self.properties[name] for name in self.properties
                           if name in fields},
            "required": [name for name in self.required if name in fields],
            "additionalProperties": False,
        }
        for key in ("title", "description", "$defs", "definitions"):
            if key in self.schema:
                sub[key] = self.schema[key]
        return sub

    def error_lines(self, records: Sequence[JSONValue], fields: set[str] | None = None
                    ) -> list[str]:
        """Readable errors of coerced records, limited to ``fields`` (for a repair prompt)."""
        lines = []
        many = len(records) > 1
        with self.bounded():
            for number, record in enumerate(records):
                for error in self._iter_errors(coerce_to_schema(record, self.schema)):
                    path = [str(p) for p in error.absolute_path]
                    if fields is not None and path and path[0] not in fields:
                        continue
                    where = "/".join(path) or "(record)"
                    lines.append(f"{f'records[{number}].' if many else ''}{where}: {error.message}")
        return lines


def _with_nulls(value: JSONValue, schema: JSONValue) -> JSONValue:
    if not isinstance(schema, dict):
        return value
    if isinstance(value, list):
        return [_with_nulls(item, schema.get("items")) for item in value]
    if not isinstance(value, dict):
        return value
    given = schema.get("properties")
    properties = given if isinstance(given, dict) else {}
    filled = {name: _with_nulls(item, properties.get(name)) for name, item in value.items()}
    required = schema.get("required") or []
    for name in required if isinstance(required, list) else []:
        if isinstance(name, str) and name not in filled and _allows_null(properties.get(name)):
            filled[name] = None
    return filled


def _allows_null(schema: JSONValue) -> bool:
    enum = schema.get("enum") if isinstance(schema, dict) else None
    return isinstance(schema, dict) and allows_null(schema) and (
        not isinstance(enum, list) or None in enum)


@functools.lru_cache(maxsize=MAX_CACHED_CHECKERS)
def _checker(batch_id: str, schema_json: str, timeout: float | None) -> RecordChecker:
    return RecordChecker(json.loads(schema_json), timeout)


def checker_for(
    batch_id: str, schema: Mapping[str, object], timeout: float | None = None
) -> RecordChecker:
    """The compiled checker of a batch's schema (once per batch and process).

    A schema that cannot be compiled at all (stored before the submit checks
    refused it) raises :class:`ValidationFailedError` for each item.
    """
    try:
        return _checker(batch_id, json.dumps(schema, sort_keys=True, default=_as_object),
                        timeout)
    except Exception as exc:
        raise ValidationFailedError(
            f"the batch schema cannot be used: {type(exc).__name__}: {exc}"[:MAX_MESSAGE_CHARS]
        ) from exc


def _as_object(value: object) -> dict[str, object]:
    """A schema object with both ``$ref`` and ``$id``, which pymongo reads back as a DBRef."""
    if isinstance(value, DBRef):
        return dict(value.as_doc())
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
