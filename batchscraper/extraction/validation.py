"""Schema checks shared by the extract and validate pipelines, compiled once per batch."""

from __future__ import annotations

import functools
import json
from typing import Any

from jsonschema import Draft202012Validator

from batchscraper.extraction.coerce import coerce_to_schema
from batchscraper.llm.merge import is_empty

MAX_CACHED_CHECKERS = 32


class RecordChecker:
    """A batch schema's compiled validator, and what the extract pipeline asks of it."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.validator = Draft202012Validator(
            schema, format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        self.properties: dict[str, Any] = dict(schema.get("properties") or {})
        self.required: list[str] = [
            name for name in schema.get("required") or [] if name in self.properties
        ]

    def errors(self, record: Any, number: int = 0) -> list[dict[str, Any]]:
        """jsonschema errors of one (coerced) record: ``{record, path, message}``."""
        return [
            {
                "record": number,
                "path": "/".join(str(p) for p in error.absolute_path),
                "message": error.message,
            }
            for error in self.validator.iter_errors(record)
        ]

    def invalid_fields(self, record: dict[str, Any]) -> set[str]:
        """Top-level fields that are missing although required, or whose value is invalid."""
        bad = {name for name in self.required if is_empty(record.get(name))}
        for error in self.validator.iter_errors(record):
            if error.absolute_path:
                bad.add(str(error.absolute_path[0]))
        return bad & set(self.properties)

    def fields_to_ask(self, record: dict[str, Any]) -> set[str]:
        """What an LLM should fill: every field not validly filled, when any is needed.

        Empty when the record already satisfies the schema: every required
        field filled and valid (or, for a schema without ``required``, every
        field filled).
        """
        coerced = coerce_to_schema(record, self.schema)
        invalid = self.invalid_fields(coerced)
        unfilled = {name for name in self.properties if is_empty(coerced.get(name))}
        needed = invalid if self.required else invalid | unfilled
        if not needed and record:
            return set()
        return invalid | unfilled

    def sub_schema(self, fields: set[str]) -> dict[str, Any]:
        """The schema restricted to ``fields`` (what the LLM is asked for)."""
        sub: dict[str, Any] = {
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

    def error_lines(self, records: list[Any], fields: set[str] | None = None) -> list[str]:
        """Readable errors of coerced records, limited to ``fields`` (for a repair prompt)."""
        lines = []
        many = len(records) > 1
        for number, record in enumerate(records):
            for error in self.validator.iter_errors(coerce_to_schema(record, self.schema)):
                path = [str(p) for p in error.absolute_path]
                if fields is not None and path and path[0] not in fields:
                    continue
                where = "/".join(path) or "(record)"
                lines.append(f"{f'records[{number}].' if many else ''}{where}: {error.message}")
        return lines


@functools.lru_cache(maxsize=MAX_CACHED_CHECKERS)
def _checker(batch_id: str, schema_json: str) -> RecordChecker:
    return RecordChecker(json.loads(schema_json))


def checker_for(batch_id: str, schema: dict[str, Any]) -> RecordChecker:
    """The compiled checker of a batch's schema (once per batch and process)."""
    return _checker(batch_id, json.dumps(schema, sort_keys=True))
