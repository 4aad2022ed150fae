"""What an item read asks for: filters, a "changed since" cursor, order, and which fields.

Every problem of the query is reported at once (400 ``INVALID_INPUT``, one
``details`` entry per parameter). Item pages leave out kept page ``content``
unless ``include=content`` (or ``fields`` names it): a page of 50 items with
markdown weighed ~1 MB.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from batchscraper.api.http import ERROR_CODE
from batchscraper.exceptions import BatchInputError
from batchscraper.jsontypes import Document
from batchscraper.store import ITEM_STATUSES

if TYPE_CHECKING:
    from twisted.web.server import Request

# the keys of an item record (see the OpenAPI ItemRecord); `fields` picks among them
ITEM_FIELDS = (
    "batch_id", "index", "url", "status", "data", "error", "attempts", "evidence", "validation",
    "extraction", "render_mode", "render_reason", "http_status", "final_url", "duration_ms",
    "started_at", "finished_at", "updated_at", "llm_calls", "tokens", "cost_usd",
    "filtered_out", "content", "content_truncated", "screenshot", "request", "dup_of", "change",
)
INCLUDES = ("content", "timeline")  # timeline: the batch's, on GET /batches/{id}
FIELD_PATH = re.compile(r"[^\s.:]{1,100}(\.[^\s.:]{1,100}){0,7}")
MAX_MATCH = 200

Problem = Callable[[str, str], None]  # notes a bad parameter: its name, what is wrong


@dataclass(frozen=True)
class ItemQuery:
    """One item read: which items, in what order, with which fields."""

    status: str | None = None
    error_code: str | None = None
    updated_after: dt.datetime | None = None
    fields: tuple[str, ...] | None = None  # None: every field (content only if included)
    include_content: bool = False
    include_timeline: bool = False
    sort: str | None = None  # a data field path, None for input order
    descending: bool = False
    match_field: str | None = None  # a data field path whose value must contain match_text
    match_text: str = ""

    @property
    def by_index(self) -> bool:
        """Whether the page is a plain range of input positions (no filter, no order)."""
        return not (self.status or self.error_code or self.updated_after or self.sort
                    or self.match_field)

    def projection(self) -> dict[str, int] | None:
        """The MongoDB projection of the item documents to read."""
        if self.fields is not None:
            return {"keys_escaped": 1, "index": 1, **{name: 1 for name in self.fields}}
        return None if self.include_content else {"content": 0}


def matches(doc: Mapping[str, object], query: ItemQuery) -> bool:
    """Whether an item (read with its status, error code and the matched field) matches."""
    if query.status is not None and doc.get("status") != query.status:
        return False
    error = cast("Document", doc.get("error") or {})
    if query.error_code is not None and error.get("code") != query.error_code:
        return False
    if query.match_field is not None:
        value = field_value(doc.get("data"), query.match_field)
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return value is not None and query.match_text.casefold() in text.casefold()
    return True


def field_value(data: object, path: str) -> object:
    """The value at ``a.b`` in a record (the first record, for a list page's records)."""
    value = data[0] if isinstance(data, list) and data else data
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def sorted_by_field(docs: Sequence[Mapping[str, object]], path: str, descending: bool
                    ) -> list[int]:
    """The docs' indexes ordered by a data field: numbers, then text, then the rest;
    items without the field last in either direction, input order among equals."""

    def key(doc: Mapping[str, object]) -> tuple[int, float | str]:
        value = field_value(doc.get("data"), path)
        if isinstance(value, bool | int | float):
            return (0, float(value))
        if isinstance(value, str):
            return (1, value.casefold())
        return (2, json.dumps(value, sort_keys=True, ensure_ascii=False))

    present = [doc for doc in docs if field_value(doc.get("data"), path) is not None]
    missing = [_index(doc) for doc in docs if field_value(doc.get("data"), path) is None]
    # (a reverse sort is stable too: input order among equals in both directions)
    ordered = sorted(sorted(present, key=_index), key=key, reverse=descending)
    return [_index(doc) for doc in ordered] + sorted(missing)


def _index(doc: Mapping[str, object]) -> int:
    return cast(int, doc["index"])


def read_item_query(request: Request, data_fields: list[str]) -> ItemQuery:
    """The item query of ``request``; ``data_fields``: the schema's field paths (``a.b``)."""
    problems: list[dict[str, str]] = []
    args = {name.decode("latin-1"): values[0].decode("utf-8", "replace")
            for name, values in request.args.items() if values}

    def problem(name: str, message: str) -> None:
        problems.append({"parameter": name, "message": message})

    status = args.get("status") or None
    if status is not None and status not in ITEM_STATUSES:
        problem("status", f"must be one of {list(ITEM_STATUSES)}, got {status!r}")
    error_code = args.get("error_code") or None
    if error_code is not None and not ERROR_CODE.fullmatch(error_code):
        problem("error_code", f"an error code such as HTTP_ERROR, got {error_code[:80]!r}")
    updated_after = _timestamp(args.get("updated_after"), problem)
    include = [part for part in (args.get("include") or "").split(",") if part]
    for part in include:
        if part not in INCLUDES:
            problem("include", f"must be one of {list(INCLUDES)}, got {part[:80]!r}")
    fields = _fields(args.get("fields"), problem)
    sort, descending = _sort(args.get("sort"), data_fields, problem)
    match_field, match_text = _match(args.get("match"), data_fields, problem)
    if problems:
        summary = "; ".join(f"{p['parameter']}: {p['message']}" for p in problems)
        raise BatchInputError(summary, details=problems)
    return ItemQuery(
        status=status, error_code=error_code, updated_after=updated_after, fields=fields,
        include_content="content" in include, include_timeline="timeline" in include,
        sort=sort, descending=descending, match_field=match_field, match_text=match_text,
    )


def _timestamp(text: str | None, problem: Problem) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        problem("updated_after", f"an ISO 8601 time with a zone (an answer's as_of), got "
                                 f"{text[:80]!r}")
        return None
    return value.astimezone(dt.UTC)


def _fields(text: str | None, problem: Problem) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in ITEM_FIELDS]
    if unknown or not names:
        problem("fields", f"comma-separated item fields among {list(ITEM_FIELDS)}, "
                          f"unknown: {[name[:80] for name in unknown]}")
        return None
    return names


def _sort(text: str | None, data_fields: list[str], problem: Problem) -> tuple[str | None, bool]:
    if not text or text in ("index", "+index"):
        return None, False
    if text == "-index":
        return None, True
    descending = text.startswith("-")
    path = text.lstrip("+-")
    if not path.startswith("data.") or path[5:] not in data_fields:
        problem("sort", f"index or data.<field> (a schema field: {data_fields}), "
                        f"optionally with a leading -, got {text[:80]!r}")
        return None, False
    return path[5:], descending


def _match(text: str | None, data_fields: list[str], problem: Problem) -> tuple[str | None, str]:
    if not text:
        return None, ""
    path, sep, needle = text.partition(":")
    field = path[5:] if path.startswith("data.") else None
    if not sep or field not in data_fields or not FIELD_PATH.fullmatch(path):
        problem("match", f"data.<field>:<text> (a schema field: {data_fields}), "
                         f"got {text[:80]!r}")
        return None, ""
    if len(needle) > MAX_MATCH:
        problem("match", f"the text is at most {MAX_MATCH} characters")
        return None, ""
    return field, needle
