"""The part of the store every other part builds on.

The client and collections, indexes, transactions and the status transition
that moves items and counters together (see :mod:`batchscraper.store` for the
invariant), plus the status names and small helpers the other parts share.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any, TypeVar

from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.client_session import ClientSession
from pymongo.database import Database

from batchscraper.exceptions import BatchNotFoundError

ITEM_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
FINAL_BATCH_STATUSES = ("completed", "partial", "failed", "cancelled")
COUNTER_KEYS = (
    *ITEM_STATUSES,
    "records_extracted",
    "records_filtered",
    "llm_calls",
    "tokens_in",
    "tokens_out",
    "cost_usd",
)
T = TypeVar("T")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def item_id(batch_id: str, index: int) -> str:
    return f"{batch_id}:{index}"


def counters_for_transition(old: str, new: str, count: int = 1) -> dict[str, int]:
    """The ``$inc`` that moves ``count`` items from status ``old`` to ``new``."""
    if old == new or count == 0:
        return {}
    return {f"counters.{old}": -count, f"counters.{new}": count}


def failure_code(error: dict[str, Any] | None) -> str:
    """The key under the batch's ``failures`` that counts failed items with this error."""
    code = str((error or {}).get("code") or "UNKNOWN")
    return re.sub(r"[^A-Za-z0-9_]", "_", code)


def final_status(counters: dict[str, Any]) -> str | None:
    """The batch status once no item is pending or running, else None."""
    if counters.get("pending", 0) or counters.get("running", 0):
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
        embedded server about 0.07 ms per stored item.
        """
        self.items.create_index([("batch_id", ASCENDING), ("status", ASCENDING)])
        if "batch_id_1_index_1" in self.items.index_information():
            self.items.drop_index("batch_id_1_index_1")  # made by earlier versions
        self.batches.create_index([("owner", ASCENDING), ("created_at", DESCENDING)])

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

    def _transition(
        self,
        batch_id: str,
        query: dict[str, Any],
        old: str,
        new: str,
        update: dict[str, Any] | None = None,
    ) -> int:
        """Move every item matching ``query`` from ``old`` to ``new``, counters with it."""
        update = dict(update or {})
        update["$set"] = {**update.get("$set", {}), "status": new}

        def work(session: ClientSession | None) -> int:
            result = self.items.update_many({**query, "status": old}, update, session=session)
            inc = counters_for_transition(old, new, result.modified_count)
            if inc and new == "failed":
                inc["failures." + failure_code(update["$set"].get("error"))] = result.modified_count
            if inc:
                self.batches.update_one({"_id": batch_id}, {"$inc": inc}, session=session)
            return result.modified_count

        return self._atomic(work)

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches.find_one({"_id": batch_id})
        if batch is None:
            raise BatchNotFoundError(f"no batch {batch_id!r}")
        return batch
