"""Idempotency keys of API requests (blocking pymongo: call it from a thread).

A request with an ``Idempotency-Key`` takes its key before it writes anything
(:meth:`IdempotencyKeys.reserve`) and records what it made once it made it
(:meth:`IdempotencyKeys.answer`); a failed request gives its key back
(:meth:`IdempotencyKeys.forget`). A request with a key already taken reads it
(:meth:`IdempotencyKeys.find`): the same body gets the first request's answer,
another body is refused. Keys expire ``BATCH_API_IDEMPOTENCY_TTL`` seconds after
they were taken.
"""

from __future__ import annotations

import datetime as dt
from typing import NotRequired, TypedDict, cast

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from batchscraper.exceptions import IdempotencyConflictError
from batchscraper.jsontypes import Document
from batchscraper.store.base import utcnow

IDEMPOTENCY = "idempotency"


class IdempotencyKey(TypedDict):
    """A key taken by a request: its body's fingerprint and what the request made."""

    _id: str  # the caller's owner and the key
    fingerprint: str
    created_at: dt.datetime
    batch_id: str | None  # the batch a POST /batches made (None: not yet)
    appended: NotRequired[dict[str, int] | None]  # what a POST .../urls appended


class IdempotencyKeys:
    """The ``idempotency`` collection."""

    def __init__(self, db: Database[Document]) -> None:
        self.keys = db[IDEMPOTENCY]

    def ensure_indexes(self, ttl_seconds: int) -> None:
        self.keys.create_index("created_at", expireAfterSeconds=ttl_seconds)

    def reserve(self, key_id: str, fingerprint: str, **answer: object) -> bool:
        """Take the key for a request about to write (``answer``: its fields, not yet
        known); False when a concurrent request with the same key took it first."""
        try:
            self.keys.insert_one({"_id": key_id, "fingerprint": fingerprint,
                                  "created_at": utcnow(), **answer})
        except DuplicateKeyError:
            return False
        return True

    def answer(self, key_id: str, **answer: object) -> None:
        """Record what the request that took the key made."""
        self.keys.update_one({"_id": key_id}, {"$set": answer})

    def forget(self, key_id: str) -> None:
        """Give the key back: its request failed before it made anything."""
        self.keys.delete_one({"_id": key_id})

    def find(self, key_id: str, fingerprint: str) -> IdempotencyKey | None:
        """The key, if a request took it; 422 ``IDEMPOTENCY_CONFLICT`` when that request's
        body was another."""
        doc = cast("IdempotencyKey | None", self.keys.find_one({"_id": key_id}))
        if doc is not None and doc["fingerprint"] != fingerprint:
            raise IdempotencyConflictError(
                "Idempotency-Key was already used with a different request body")
        return doc
