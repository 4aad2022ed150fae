"""``GET /batches/{id}/changes``: the items that changed since the run the batch compares with.

Owner-scoped like every batch read. The items whose ``change.status`` is
among ``change`` (a comma list; default every status but ``unchanged``) are
found once per read (their input positions, from a projection of the
batch's items), then read page by page by ``_id``, in input order, as item
pages are. ``format=ndjson`` (or ``Accept: application/x-ndjson``) streams
them all, one record per line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

from twisted.internet.threads import deferToThread

from batchscraper.api.app import BatchApi
from batchscraper.api.http import (
    NDJSON,
    ApiResource,
    JsonResponse,
    query_choice,
    query_int,
    stream_ndjson,
)
from batchscraper.api.views import item_record, json_default, pagination
from batchscraper.changes import CHANGE_STATUSES
from batchscraper.exceptions import BatchInputError
from batchscraper.jsontypes import Document
from batchscraper.store import BatchStore
from batchscraper.store.base import document_id

if TYPE_CHECKING:
    from twisted.web.server import Request

logger = logging.getLogger(__name__)

DEFAULT_CHANGES = tuple(status for status in CHANGE_STATUSES if status != "unchanged")
# what a change record shows: where, what it is now, and what changed
CHANGE_FIELDS = {"batch_id": 1, "index": 1, "url": 1, "status": 1, "change": 1, "data": 1,
                 "error": 1, "http_status": 1, "finished_at": 1, "keys_escaped": 1}


def changed_indexes(store: BatchStore, batch_id: str, statuses: tuple[str, ...]) -> list[int]:
    """The input positions of the batch's items whose change is among ``statuses``."""
    # one indexed condition (batch_id): the change status is checked here, as item filters are
    docs = store.item_fields(batch_id, ("index", "change.status"))
    wanted = set(statuses)
    return sorted(doc["index"] for doc in docs
                  if (doc.get("change") or {}).get("status") in wanted)


def read_statuses(request: Request) -> tuple[str, ...]:
    """The ``change`` parameter: statuses among :data:`CHANGE_STATUSES` (400 otherwise)."""
    values = request.args.get(b"change")
    if not values:
        return DEFAULT_CHANGES
    given = [part.strip() for part in values[0].decode("latin-1").split(",") if part.strip()]
    unknown = [part[:40] for part in given if part not in CHANGE_STATUSES]
    if unknown or not given:
        raise BatchInputError(
            f"change: comma-separated among {list(CHANGE_STATUSES)}, unknown: {unknown}",
            details=[{"parameter": "change", "message": f"unknown: {unknown}"}],
        )
    return tuple(dict.fromkeys(given))


class Changes(ApiResource):
    """``/batches/{id}/changes``: changed items with old -> new per field, paged or NDJSON."""

    def __init__(self, api: BatchApi, batch_id: str) -> None:
        super().__init__(api)
        self.batch_id = batch_id

    async def handle_GET(self, request: Request) -> JsonResponse | None:
        caller = self.caller(request)
        config = self.api.config
        statuses = read_statuses(request)
        accept = (request.getHeader(b"accept") or b"").decode("latin-1")
        stream = NDJSON in accept or query_choice(request, "format", ("json", "ndjson")) == "ndjson"
        page = query_int(request, "page", 1, 1, 10**9)
        limit = query_int(request, "limit", config.page_size, 1, config.max_items_limit)
        store = self.api.service.store

        def find() -> tuple[Document, list[int]]:
            batch = self.api.service.get(caller, self.batch_id)
            return batch, changed_indexes(store, document_id(batch), statuses)

        batch, indexes = await deferToThread(find)
        if stream:
            chunk = config.stream_chunk
            chunks = (indexes[first:first + chunk] for first in range(0, len(indexes), chunk))
            await self._stream(request, document_id(batch), chunks)
            return None
        first = (page - 1) * limit
        docs = await deferToThread(
            store.items_by_index, document_id(batch), indexes[first:first + limit], None,
            CHANGE_FIELDS,
        )
        compare = cast("Document", batch.get("compare") or {})
        return JsonResponse({
            "batch_id": batch["_id"],
            "compare_to": compare.get("to"),
            "ignore_fields": compare.get("ignore_fields", []),
            "changes": batch.get("changes") or {},
            "items": [item_record(doc) for doc in docs],
            "pagination": pagination(page, limit, len(indexes)),
        })

    async def _stream(self, request: Request, batch_id: str, chunks: Iterator[list[int]]) -> None:
        """One change record per line, read chunk by chunk, paced by the client."""
        store = self.api.service.store

        def next_lines() -> bytes | None:
            indexes = next(chunks, None)
            if indexes is None:
                return None
            docs = store.items_by_index(batch_id, indexes, None, CHANGE_FIELDS)
            return b"".join(json.dumps(item_record(doc), default=json_default).encode() + b"\n"
                            for doc in docs)

        await stream_ndjson(request, next_lines, f"the changes of {batch_id}")
