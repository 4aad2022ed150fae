"""Learned templates as the API's callers see them, scoped to their owner (blocking: call from a
thread).

An owner's templates serve only that owner's batches, so a caller reads and deletes only its
own (another owner's is 403, an unknown id 404); an admin key and the open API (no keys)
see every template.
Deleting one removes that version: the next page of its shape starts learning it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from batchscraper.api.auth import Caller
from batchscraper.api.service import BatchService
from batchscraper.exceptions import BatchNotFoundError, ForbiddenError
from batchscraper.templates.store import TEMPLATE_ID, TemplateDocument, TemplateStore


@dataclass(frozen=True)
class TemplateFilter:
    """What ``GET /templates`` narrows the list to (None: no filter)."""

    host: str | None = None
    status: str | None = None
    batch_id: str | None = None


class TemplateService:
    """List, read and delete templates."""

    def __init__(self, store: TemplateStore, batches: BatchService) -> None:
        self.store = store
        self.batches = batches

    def page(self, caller: Caller, found: TemplateFilter, page: int,
             limit: int) -> tuple[list[TemplateDocument], int]:
        """One page of the caller's templates, newest first; ``batch_id``: those the batch used
        or learned (the batch must be the caller's: 404, 403)."""
        query = caller.owner_query()  # every owner's for admins
        if found.host:
            query["host"] = found.host
        if found.status:
            query["status"] = found.status
        if found.batch_id is not None:
            batch = self.batches.get(caller, found.batch_id)
            query["_id"] = {"$in": sorted(cast("dict[str, object]", batch.get("templates") or {}))}
        return self.store.page(query, page, limit)

    def get(self, caller: Caller, template_id: str) -> TemplateDocument:
        """The template, if it exists (404) and is the caller's (403)."""
        doc = self.store.get(template_id) if TEMPLATE_ID.fullmatch(template_id) else None
        if doc is None:
            raise BatchNotFoundError(f"no template {template_id[:80]!r}")
        if not caller.owns(doc):
            raise ForbiddenError(f"template {template_id} belongs to another API key")
        return doc

    def delete(self, caller: Caller, template_id: str) -> TemplateDocument:
        """Remove the template (404 when another request removed it first)."""
        doc = self.get(caller, template_id)
        if not self.store.delete(template_id):
            raise BatchNotFoundError(f"no template {template_id[:80]!r}")
        return doc
