"""The part of the store every other part builds on.

The client and collections, indexes, transactions, plus the batch status
names and small helpers the other parts share. Item statuses and every
change of them are in :mod:`batchscraper.store.transitions`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.client_session import ClientSession
from pymongo.database import Database

from batchscraper.exceptions import BatchNotFoundError

FINAL_BATCH_STATUSES = ("completed", "partial", "failed", "cancelled")
COUNTER_KEYS = (
    "pending",
    "leased",
    "running",
    "completed",
    "failed",
    "cancelled",
    "records_extracted",
    "records_filtered",
    "cache_hits",
    "cache_revalidated",
    "llm_calls",
    "llm_seconds",
    "tokens_in",
    "tokens_out",
    "cost_usd",
)
T = TypeVar("T")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def item_id(batch_id: str, index: int) -> str:
    return f"{batch_id}:{index}"


def document_id(doc: Mapping[str, object]) -> str:
    """A stored document's ``_id``: a batch's, schedule's, template's or event's (strings)."""
    return cast(str, doc["_id"])


def record_index(record: Mapping[str, object]) -> int:
    """The input position of the item an item record (or item document) is for."""
    index = record["index"]
    assert isinstance(index, int)  # set from the item document's own index
    return index


def final_status(counters: Mapping[str, float]) -> str | None:
    """The batch status once no item is pending, leased or running, else None."""
    if counters.get("pending", 0) or counters.get("leased", 0) or counters.get("running", 0):
        return None
    completed, failed = counters.get("completed", 0), counters.get("failed", 0)
    if counters.get("cancelled", 0) and not failed and not completed:
        return "cancelled"
    if failed and not completed:
        return "failed"
    if failed or counters.get("cancelled", 0):
        return "partial"
    return "completed"


class StoreBase:
    """The database handles and write primitives the store's parts share."""

    def __init__(self, client: MongoClient, database: str) -> None:
        self.client = client
        self.db: Database = client[database]
        self.batches = self.db["batches"]
        self.items = self.db["items"]
        self._transactions: bool | None = None

    def ensure_indexes(self) -> None:
        """Create the indexes the store's queries rely on (idempotent).

        Items are read by ``_id`` (``<batch>:<index>``, so input order is a list of
        ids), never by an index on ``index``: each secondary index costs the
        embedded server about 0.07 ms per stored item. ``updated_at`` is indexed
        for the API's "changed since" reads: a range on it reads only the items
        that moved (~3 ms among 10,000, against ~0.9 s for a scan).
        """
        self.items.create_index([("batch_id", ASCENDING), ("status", ASCENDING)])
        self.items.create_index([("batch_id", ASCENDING), ("updated_at", ASCENDING)])
        self.batches.create_index([("owner", ASCENDING), ("created_at", DESCENDING)])
        # retention (expires_in, BATCH_RETENTION_DAYS): MongoDB removes an expired batch
        # document; its items, screenshots and the rest go in the sweep (store.retention).
        # No TTL index on items: on the embedded server even a sparse one slowed storing a
        # batch of 10,000 URLs by 1.2-1.7x (every item pays for it, expiring or not)
        self.batches.create_index("expires_at", expireAfterSeconds=0, sparse=True)

    def _atomic(self, work: Callable[[ClientSession | None], T]) -> T:
        """Run ``work`` in a transaction where the server has them (replica sets).

        ``with_transaction`` retries write conflicts between concurrent
        workers. Without transactions the item write still carries its
        status precondition, so nothing counts twice; a crash between the two
        writes can only leave a counter behind, which ``aggregate_counters``
        shows.
        """
        if self._transactions is None:
            hello = self.client.admin.command("hello")
            self._transactions = bool(hello.get("setName") or hello.get("msg") == "isdbgrid")
        if not self._transactions:
            return work(None)
        with self.client.start_session() as session:
            return session.with_transaction(work)

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches.find_one({"_id": batch_id})
        if batch is None:
            raise BatchNotFoundError(f"no batch {batch_id!r}")
        return batch
