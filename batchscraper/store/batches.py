"""MongoDB persistence for batches and their items.

Invariant: a batch's ``counters`` change only together with an item's status
transition, and every transition names the old status as a precondition.
A replayed or duplicated write therefore matches nothing and counts nothing,
and ``counters`` always equals an aggregate over ``items``
(:meth:`BatchStore.aggregate_counters` recomputes it, for checks).

All methods are blocking pymongo calls: the Scrapy side calls them through
``asyncio.to_thread``.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import gridfs
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, MongoClient, ReturnDocument, UpdateMany, UpdateOne
from pymongo.client_session import ClientSession
from pymongo.database import Database

from batchscraper.exceptions import BatchNotFoundError, BatchStateError
from batchscraper.inputs import BatchSpec
from batchscraper.mongo import connect, database_name, mongo_uri
from batchscraper.webhooks import OUTBOX, batch_completed_event

logger = logging.getLogger(__name__)

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
INSERT_CHUNK = 1_000
BREAKER_SEVERITY = {"closed": 0, "slowed": 1, "open": 2}
T = TypeVar("T")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_batch_id() -> str:
    return f"b_{uuid.uuid4().hex}"


def item_id(batch_id: str, index: int) -> str:
    return f"{batch_id}:{index}"


def counters_for_transition(old: str, new: str, count: int = 1) -> dict[str, int]:
    """The ``$inc`` that moves ``count`` items from status ``old`` to ``new``."""
    if old == new or count == 0:
        return {}
    return {f"counters.{old}": -count, f"counters.{new}": count}


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


class BatchStore:
    """Batches and items in one MongoDB database."""

    def __init__(self, client: MongoClient, database: str) -> None:
        self.client = client
        self.db: Database = client[database]
        self.batches = self.db["batches"]
        self.items = self.db["items"]
        self._transactions: bool | None = None

    def ensure_indexes(self) -> None:
        """Create the indexes the queries below rely on (idempotent).

        Items are read by ``_id`` (``<batch>:<index>``, so input order is a list of
        ids), never by an index on ``index``: each secondary index costs the
        embedded server about 0.07 ms per stored item.
        """
        self.items.create_index([("batch_id", ASCENDING), ("status", ASCENDING)])
        if "batch_id_1_index_1" in self.items.index_information():
            self.items.drop_index("batch_id_1_index_1")  # made by earlier versions
        self.batches.create_index([("owner", ASCENDING), ("created_at", DESCENDING)])

    # -- transactions ----------------------------------------------------------

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
            if inc:
                self.batches.update_one({"_id": batch_id}, {"$inc": inc}, session=session)
            return result.modified_count

        return self._atomic(work)

    # -- batches ---------------------------------------------------------------

    def create_batch(
        self, spec: BatchSpec, *, owner: str | None = None, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Store a batch and one pending item per URL; return the batch document.

        Items go in first and the batch document last, so a failure half-way
        leaves no visible batch (and its items are removed).
        """
        batch_id = new_batch_id()
        now = utcnow()
        total = len(spec.urls)
        batch = {
            "_id": batch_id,
            "status": "pending",
            "created_at": now,
            "started_at": None,
            "finished_at": None,
            "owner": owner,
            "schema": spec.schema,
            "prompt": spec.prompt,
            "options": spec.options.to_dict(),
            "counters": {key: 0 for key in COUNTER_KEYS} | {"total": total, "pending": total},
            "error": None,
            **(extra or {}),
        }
        first_of, copies = duplicate_groups(spec)  # once per batch, not per chunk
        try:
            for start in range(0, total, INSERT_CHUNK):
                docs = self._item_docs(batch_id, spec, first_of, copies, start, INSERT_CHUNK)
                self.items.insert_many(docs, ordered=False)
            self.batches.insert_one(batch)
        except Exception:
            self.items.delete_many({"batch_id": batch_id})
            raise
        return batch

    @staticmethod
    def _item_docs(
        batch_id: str,
        spec: BatchSpec,
        first_of: dict[int, int],
        copies: dict[int, list[int]],
        start: int,
        count: int,
    ) -> list[dict[str, Any]]:
        """The pending item documents of ``count`` URLs from ``start``."""
        docs = []
        for index in range(start, min(start + count, len(spec.urls))):
            url = spec.urls[index]
            doc: dict[str, Any] = {
                "_id": item_id(batch_id, index),
                "batch_id": batch_id,
                "index": index,
                "url": url.url,
                "status": "pending",
                "attempts": 0,
            }
            overrides = {
                key: value
                for key, value in (
                    ("render_js", url.render_js),
                    ("wait_for", url.wait_for),
                    ("headers", url.headers),
                    ("timeout", url.timeout),
                )
                if value is not None
            }
            overrides.update(url.browser or {})
            if overrides:
                doc["request"] = overrides
            if index in first_of:
                doc["dup_of"] = first_of[index]
            elif index in copies:
                doc["duplicates"] = copies[index]
            docs.append(doc)
        return docs

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches.find_one({"_id": batch_id})
        if batch is None:
            raise BatchNotFoundError(f"no batch {batch_id!r}")
        return batch

    def mark_running(self, batch_id: str, job_id: str | None = None) -> None:
        """pending (or a re-run of a finished batch) -> running."""
        update: dict[str, Any] = {"status": "running", "finished_at": None}
        if job_id:
            update["job_id"] = job_id
        self.batches.update_one(
            {"_id": batch_id, "status": {"$ne": "cancelled"}},
            [{"$set": {**update, "started_at": {"$ifNull": ["$started_at", utcnow()]}}}],
        )

    def finalize_batch(self, batch_id: str) -> str | None:
        """Set the final status if no item is pending or running; return it (or None)."""
        batch = self.get_batch(batch_id)
        if batch["status"] in FINAL_BATCH_STATUSES:
            return str(batch["status"])
        status = final_status(batch["counters"])
        if status is None:
            return None
        self._finish(batch_id, status)
        return str(self.get_batch(batch_id)["status"])

    def cancel_batch(self, batch_id: str, reason: str = "batch cancelled") -> dict[str, Any]:
        """Mark the batch cancelled and its unfinished items cancelled."""
        batch = self.get_batch(batch_id)
        if batch["status"] in FINAL_BATCH_STATUSES and batch["status"] != "cancelled":
            raise BatchStateError(f"batch {batch_id} already finished ({batch['status']})")
        self.batches.update_one(
            {"_id": batch_id, "status": {"$nin": list(FINAL_BATCH_STATUSES)}},
            {"$set": {"cancel_requested": True}},
        )
        self.cancel_unfinished(batch_id, reason)
        self._finish(batch_id, "cancelled")
        return self.get_batch(batch_id)

    def _finish(self, batch_id: str, status: str) -> bool:
        """Give the batch its final ``status`` once, queueing its webhook in the same step.

        The status change and the ``webhook_outbox`` insert share a transaction,
        and the event id counts the batch's runs to a final status, so the
        ``batch.completed`` event is written exactly once per run.
        """

        def work(session: ClientSession | None) -> bool:
            batch = self.batches.find_one_and_update(
                {"_id": batch_id, "status": {"$nin": list(FINAL_BATCH_STATUSES)}},
                {"$set": {"status": status, "finished_at": utcnow()}, "$inc": {"finished_runs": 1}},
                return_document=ReturnDocument.AFTER,
                session=session,
            )
            if batch is None:
                return False
            event = batch_completed_event(batch)
            if event is not None:
                self.db[OUTBOX].insert_one(event, session=session)
            return True

        return self._atomic(work)

    def retry_failed(self, batch_id: str, *, only_retryable: bool = False) -> int:
        """failed -> pending for the items of a finished batch; returns how many moved.

        The batch goes back to ``pending`` with the counters moved in the same
        transaction. Duplicates of a URL share its error, so they move together.
        """
        batch = self.get_batch(batch_id)
        if batch["status"] not in ("completed", "partial", "failed"):
            raise BatchStateError(
                f"batch {batch_id} is {batch['status']}; only a finished batch"
                " (completed, partial, failed) can be retried"
            )
        query: dict[str, Any] = {"batch_id": batch_id, "status": "failed"}
        if only_retryable:
            query["error.retryable"] = True
        reset = {
            "$set": {"status": "pending"},
            "$unset": {key: "" for key in ("error", "data", "validation", "evidence", "lease")},
        }

        def work(session: ClientSession | None) -> int:
            moved = self.items.update_many(query, reset, session=session).modified_count
            if moved:
                self.batches.update_one(
                    {"_id": batch_id},
                    {
                        "$inc": counters_for_transition("failed", "pending", moved),
                        "$set": {"status": "pending", "finished_at": None},
                    },
                    session=session,
                )
            return moved

        moved = self._atomic(work)
        if not moved:
            raise BatchStateError(
                f"batch {batch_id} has no {'retryable ' if only_retryable else ''}failed items",
                code="NOTHING_TO_RETRY",
            )
        return moved

    def cancel_unfinished(self, batch_id: str, reason: str) -> int:
        """pending|running -> cancelled for every unfinished item of the batch."""
        update = {
            "$set": {
                "error": {"code": "CANCELLED", "message": reason, "retryable": True},
                "finished_at": utcnow(),
            },
            "$unset": {"lease": ""},
        }
        return sum(
            self._transition(batch_id, {"batch_id": batch_id}, old, "cancelled", update)
            for old in ("pending", "running")
        )

    def cancel_requested(self, batch_id: str) -> bool:
        batch = self.batches.find_one({"_id": batch_id}, {"status": 1, "cancel_requested": 1})
        return bool(batch and (batch.get("cancel_requested") or batch["status"] == "cancelled"))

    def set_batch_error(self, batch_id: str, error: dict[str, Any]) -> None:
        self.batches.update_one({"_id": batch_id}, {"$set": {"error": error}})

    # -- leases ----------------------------------------------------------------

    def claim(
        self, batch_id: str, worker: str, indexes: range, lease_seconds: float
    ) -> list[dict[str, Any]]:
        """Lease the pending items among ``indexes`` to ``worker``: pending -> running.

        Items are addressed by ``_id`` (``<batch>:<index>``), a point lookup on
        every MongoDB-wire server, rather than a sorted range scan.
        Duplicates (``dup_of``) are never claimed: their primary's result is
        copied to them.
        """
        ids = [item_id(batch_id, index) for index in indexes]
        if not ids:
            return []
        token = uuid.uuid4().hex
        now = utcnow()
        lease = {
            "worker": worker,
            "token": token,
            "until": now + dt.timedelta(seconds=lease_seconds),
        }
        claimed = self._transition(
            batch_id,
            {"_id": {"$in": ids}, "dup_of": {"$exists": False}},
            "pending",
            "running",
            {"$set": {"lease": lease, "started_at": now}, "$inc": {"attempts": 1}},
        )
        if not claimed:
            return []
        docs = self.items.find({"_id": {"$in": ids}, "lease.token": token})
        return sorted(docs, key=lambda doc: doc["index"])

    def reclaim_expired(
        self, batch_id: str, worker: str, limit: int, lease_seconds: float
    ) -> list[dict[str, Any]]:
        """Take over running items whose lease expired (their worker died)."""
        now = utcnow()
        stale = [
            doc
            for doc in self._running_leases(batch_id)
            if doc.get("lease") and doc["lease"]["until"] < now
        ][:limit]
        taken = []
        for doc in stale:
            token = uuid.uuid4().hex
            lease = {
                "worker": worker,
                "token": token,
                "until": now + dt.timedelta(seconds=lease_seconds),
            }
            moved = self.items.update_one(
                {"_id": doc["_id"], "status": "running", "lease.token": doc["lease"]["token"]},
                {"$set": {"lease": lease, "started_at": now}, "$inc": {"attempts": 1}},
            )
            found = self.items.find_one({"_id": doc["_id"]}) if moved.modified_count else None
            if found is not None:
                taken.append(found)
        if taken:
            logger.info("Reclaimed %d items with expired leases in %s", len(taken), batch_id)
        return taken

    def has_claimable(self, batch_id: str) -> bool:
        """Whether any non-duplicate item of the batch is still pending."""
        # only the (batch_id, status) pair: the embedded server scans the whole
        # collection when a query adds any other field
        pending = self.items.find({"batch_id": batch_id, "status": "pending"}, {"dup_of": 1})
        return any("dup_of" not in doc for doc in pending)

    def lease_wait(self, batch_id: str, worker: str) -> float | None:
        """How long a worker that found nothing to claim should wait before looking again.

        0 when pending items can be claimed; while other workers hold running
        items, the seconds until the first of their leases expires (a dead
        worker's items are then reclaimed); None when the batch has no work left.
        """
        if self.has_claimable(batch_id):
            return 0.0
        now = utcnow()
        expiries = [
            doc["lease"]["until"]
            for doc in self._running_leases(batch_id)
            if doc.get("lease") and doc["lease"]["worker"] != worker
        ]
        if not expiries:
            return None
        return max((min(expiries) - now).total_seconds(), 0.0)

    def _running_leases(self, batch_id: str) -> Iterator[dict[str, Any]]:
        """The running items of a batch with their leases (through the status index)."""
        return self.items.find({"batch_id": batch_id, "status": "running"}, {"lease": 1})

    def renew_leases(self, worker: str, ids: list[str], lease_seconds: float) -> None:
        if ids:
            until = utcnow() + dt.timedelta(seconds=lease_seconds)
            self.items.update_many(
                {"_id": {"$in": ids}, "status": "running", "lease.worker": worker},
                {"$set": {"lease.until": until}},
            )

    def release(self, batch_id: str, worker: str, ids: list[str]) -> int:
        """running -> pending for items this worker leased but did not finish."""
        if not ids:
            return 0
        return self._transition(
            batch_id,
            {"_id": {"$in": ids}, "lease.worker": worker},
            "running",
            "pending",
            {"$unset": {"lease": ""}},
        )

    # -- results ---------------------------------------------------------------

    def finish_items(self, records: list[dict[str, Any]]) -> list[bool]:
        """running -> completed|failed for each record, in one transaction; copies to duplicates.

        Returns, per record, whether it was applied: False (and nothing
        changed) when the item was no longer running — already finished by
        another worker, or cancelled. The batch counters move once per batch.
        In a transaction the item statuses are read first and the writes go
        in one bulk request (its snapshot makes the read hold for the
        writes); without transactions each write carries the precondition
        and reports whether it applied.
        """
        ids = [item_id(record["batch_id"], record["index"]) for record in records]

        def work(session: ClientSession | None) -> list[bool]:
            if session is None:
                outcomes = [
                    self._finish_one(r, i, session) for r, i in zip(records, ids, strict=True)
                ]
            else:
                outcomes = self._finish_in_bulk(records, ids, session)
            increments: dict[str, Counter[str]] = defaultdict(Counter)
            for record, inc in zip(records, outcomes, strict=True):
                if inc:
                    increments[record["batch_id"]].update(inc)
            for batch_id, inc in increments.items():
                changes = {key: value for key, value in inc.items() if value}
                if changes:
                    self.batches.update_one({"_id": batch_id}, {"$inc": changes}, session=session)
            return [inc is not None for inc in outcomes]

        return self._atomic(work)

    def _finish_in_bulk(
        self, records: list[dict[str, Any]], ids: list[str], session: ClientSession
    ) -> list[dict[str, Any] | None]:
        current = {
            doc["_id"]: doc
            for doc in self.items.find(
                {"_id": {"$in": ids}}, {"status": 1, "duplicates": 1}, session=session
            )
        }
        copy_ids = {
            _id: [item_id(record["batch_id"], i) for i in current[_id].get("duplicates") or []]
            for record, _id in zip(records, ids, strict=True)
            if _id in current
        }
        pending = (
            {
                doc["_id"]
                for doc in self.items.find(
                    {
                        "_id": {"$in": [i for group in copy_ids.values() for i in group]},
                        "status": "pending",
                    },
                    {"_id": 1},
                    session=session,
                )
            }
            if any(copy_ids.values())
            else set()
        )
        writes: list[UpdateOne | UpdateMany] = []
        outcomes: list[dict[str, Any] | None] = []
        for record, _id in zip(records, ids, strict=True):
            if current.get(_id, {}).get("status") != "running":
                outcomes.append(None)
                continue
            current[_id]["status"] = record["status"]  # the same item twice in one flush
            fields, copy = _record_fields(record)
            writes.append(
                UpdateOne(
                    {"_id": _id, "status": "running"}, {"$set": fields, "$unset": {"lease": ""}}
                )
            )
            copies = [i for i in copy_ids[_id] if i in pending]
            if copies:
                writes.append(
                    UpdateMany({"_id": {"$in": copies}, "status": "pending"}, {"$set": copy})
                )
                pending.difference_update(copies)
            outcomes.append(_finish_increments(record, len(copies)))
        if writes:
            self.items.bulk_write(writes, ordered=True, session=session)
        return outcomes

    def _finish_one(
        self, record: dict[str, Any], _id: str, session: ClientSession | None
    ) -> dict[str, Any] | None:
        """Write one item's record; return its counter increments, or None if not running."""
        fields, copy = _record_fields(record)
        written = self.items.find_one_and_update(
            {"_id": _id, "status": "running"},
            {"$set": fields, "$unset": {"lease": ""}},
            projection={"duplicates": 1},
            session=session,
        )
        if written is None:
            return None
        copies = 0
        if written.get("duplicates"):
            ids = [item_id(record["batch_id"], i) for i in written["duplicates"]]
            copies = self.items.update_many(
                {"_id": {"$in": ids}, "status": "pending"}, {"$set": copy}, session=session
            ).modified_count
        return _finish_increments(record, copies)

    def save_screenshot(self, batch_id: str, index: int, png: bytes) -> dict[str, Any]:
        """Store a page screenshot in GridFS; returns the reference kept on the item."""
        bucket = gridfs.GridFSBucket(self.db, bucket_name="screenshots")
        file_id = bucket.upload_from_stream(
            f"{item_id(batch_id, index)}.png",
            png,
            metadata={"batch_id": batch_id, "index": index, "content_type": "image/png"},
        )
        return {"gridfs_id": str(file_id), "bucket": "screenshots", "bytes": len(png)}

    def load_screenshot(self, file_id: str) -> bytes:
        bucket = gridfs.GridFSBucket(self.db, bucket_name="screenshots")
        return bucket.open_download_stream(ObjectId(file_id)).read()

    def save_domain_health(
        self, batch_id: str, worker: str, entries: list[dict[str, Any]], top: int
    ) -> None:
        """Store one worker's per-domain health; ``domains``: every worker's merged, top ``top``.

        Each worker keeps its own entries under ``domain_workers`` (at most
        ``top`` each), so that workers of the same batch add up instead of
        overwriting each other.
        """
        key = worker.replace(".", "_").replace("$", "_")
        batch = self.batches.find_one({"_id": batch_id}, {"domain_workers": 1}) or {}
        workers = {**(batch.get("domain_workers") or {}), key: entries}
        self.batches.update_one(
            {"_id": batch_id},
            {
                "$set": {
                    f"domain_workers.{key}": entries,
                    "domains": merge_domain_health(workers.values(), top),
                }
            },
        )

    # -- reads -----------------------------------------------------------------

    def iter_items(
        self, batch_id: str, start: int = 0, page: int = 500
    ) -> Iterator[dict[str, Any]]:
        """Every item of the batch in input order, read by ``_id`` ranges."""
        total = self.get_batch(batch_id)["counters"]["total"]
        for first in range(start, total, page):
            yield from self.items_in_range(batch_id, first, min(first + page, total))

    def items_in_range(
        self, batch_id: str, start: int, stop: int, status: str | None = None
    ) -> list[dict[str, Any]]:
        """The items ``start`` to ``stop - 1`` (with ``status``, if given), in input order."""
        return self.items_by_index(batch_id, range(start, stop), status)

    def items_by_index(
        self, batch_id: str, indexes: Iterable[int], status: str | None = None
    ) -> list[dict[str, Any]]:
        """The items at these input positions (with ``status``, if given), in input order."""
        query: dict[str, Any] = {"_id": {"$in": [item_id(batch_id, i) for i in indexes]}}
        if status is not None:
            query["status"] = status
        return sorted(self.items.find(query), key=lambda doc: doc["index"])

    def aggregate_counters(self, batch_id: str) -> dict[str, int]:
        """Recompute the status counters from the items (slow: for checks and repair)."""
        counts = {status: 0 for status in ITEM_STATUSES}
        for row in self.items.aggregate(
            [{"$match": {"batch_id": batch_id}}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        ):
            counts[row["_id"]] = row["n"]
        counts["total"] = sum(counts.values())
        return counts


def duplicate_groups(spec: BatchSpec) -> tuple[dict[int, int], dict[int, list[int]]]:
    """Duplicate URLs of a batch: each duplicate's first index, and each first's duplicates."""
    first_index: dict[str, int] = {}
    first_of: dict[int, int] = {}
    copies: dict[int, list[int]] = {}
    for index, url in enumerate(spec.urls):
        first = first_index.setdefault(url.fetch_key(), index)
        if first != index:
            first_of[index] = first
            copies.setdefault(first, []).append(index)
    return first_of, copies


def merge_domain_health(
    workers: Iterable[list[dict[str, Any]]], top: int
) -> list[dict[str, Any]]:
    """Per-domain health summed over workers: the ``top`` domains with the most requests.

    Delays and breaker states are per process: the largest delay and the
    most severe state (open > slowed > closed) are shown.
    """
    merged: dict[str, dict[str, Any]] = {}
    for entries in workers:
        for entry in entries:
            seen = merged.setdefault(
                entry["domain"],
                {"domain": entry["domain"], "requests": 0, "errors": 0, "delay": 0.0,
                 "breaker": "closed"},
            )
            seen["requests"] += entry["requests"]
            seen["errors"] += entry["errors"]
            seen["delay"] = max(seen["delay"], entry["delay"])
            if BREAKER_SEVERITY[entry["breaker"]] > BREAKER_SEVERITY[seen["breaker"]]:
                seen["breaker"] = entry["breaker"]
    ranked = sorted(merged.values(), key=lambda entry: entry["requests"], reverse=True)[:top]
    for entry in ranked:
        entry["error_rate"] = round(entry["errors"] / max(entry["requests"], 1), 3)
    return ranked


def _record_fields(record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields written on the item, and those copied to its duplicates."""
    fields = {k: v for k, v in record.items() if k not in ("batch_id", "index", "url")}
    fields["finished_at"] = utcnow()
    return fields, {k: v for k, v in fields.items() if k != "attempts"}


def _finish_increments(record: dict[str, Any], copies: int) -> dict[str, Any]:
    """Counter increments for one finished item and ``copies`` duplicates sharing its record."""
    status = record["status"]
    inc: dict[str, Any] = counters_for_transition("running", status)
    for key, value in counters_for_transition("pending", status, copies).items():
        inc[key] = inc.get(key, 0) + value
    if status == "completed" and _record_count(record):
        inc["counters.records_extracted"] = _record_count(record) * (1 + copies)
    inc.update(_usage_increments(record))
    return inc


def _usage_increments(record: dict[str, Any]) -> dict[str, Any]:
    """Counter increments for what processing the item cost (LLM use, filtered records)."""
    tokens = record.get("tokens") or {}
    usage = {
        "counters.llm_calls": record.get("llm_calls") or 0,
        "counters.tokens_in": tokens.get("in", 0),
        "counters.tokens_out": tokens.get("out", 0),
        "counters.cost_usd": record.get("cost_usd") or 0.0,
        "counters.records_filtered": record.get("filtered_out") or 0,
    }
    return {key: value for key, value in usage.items() if value}


def _record_count(record: dict[str, Any]) -> int:
    data = record.get("data")
    if isinstance(data, list):
        return len(data)
    return 1 if data else 0


_STORES: dict[str, BatchStore] = {}


def store_for(uri: str | None = None) -> BatchStore:
    """The process-wide store for ``uri`` (default: MONGO_URI or the embedded server)."""
    uri = uri or mongo_uri()
    if uri not in _STORES:
        store = BatchStore(connect(uri), database_name(uri))
        store.ensure_indexes()
        _STORES[uri] = store
    return _STORES[uri]
