"""An item's status, and the only code that changes it.

The statuses (:class:`ItemStatus`), the table of allowed moves
(:data:`TRANSITIONS`: which operation makes each), and the store operations
that make them — claim (pending -> leased: a worker holds it), start (leased ->
running: its request reached the downloader), reclaim (a dead worker's item
leased again), release, finish (completed or failed, with copies to duplicate
URLs), cancel, retry, give up (``WORKER_LOST``). Each one moves the
item's status and the batch's ``counters`` (and ``failures.<CODE>``) in one
transaction, with the old status as the item write's precondition: a replayed
or duplicated write matches nothing and counts nothing, so ``counters`` always
equals an aggregate over the items. Every move also stamps the item's
``updated_at`` (what the API's ``updated_after`` cursor reads), and every
finish counts in the batch's ``timeline`` (items finished per minute) and, in a batch
that compares with an earlier run, its ``change`` in the batch's ``changes``
(:mod:`batchscraper.changes`). Nothing outside
this module writes an item's ``status`` or a batch's ``counters``.

A record that cannot be stored as it is becomes :func:`failed_record` (the
writer's ``STORE_FAILED``, an oversized record's ``CONTENT_TOO_LARGE``).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import StrEnum
from typing import NotRequired, TypedDict, cast

from pymongo import UpdateMany, UpdateOne
from pymongo.client_session import ClientSession

from batchscraper.changes import change_increments
from batchscraper.exceptions import (
    BatchNotFoundError,
    BatchStateError,
    CancelledError,
    ErrorInfo,
    InvalidURLsError,
    ItemError,
    NothingToRetryError,
    TooLargeError,
    WorkerLostError,
)
from batchscraper.jsontypes import Document, Query
from batchscraper.store.base import COUNTER_KEYS, item_id, record_index, utcnow
from batchscraper.store.documents import Lease
from batchscraper.store.events import FinishEvents
from batchscraper.templates.store import TEMPLATE_ID


class ItemStatus(StrEnum):
    PENDING = "pending"
    LEASED = "leased"  # claimed by a worker, its request waiting in the worker's queue
    RUNNING = "running"  # in flight: its request reached the downloader
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ITEM_STATUSES = tuple(ItemStatus)
UNFINISHED = (ItemStatus.PENDING, ItemStatus.LEASED, ItemStatus.RUNNING)
HELD = (ItemStatus.LEASED, ItemStatus.RUNNING)  # statuses of an item a worker holds a lease on
# (old, new) -> the operation that makes the move; no other move exists
# the ItemTransitions operations that make each move (tests/test_transitions.py checks them)
TRANSITIONS: dict[tuple[ItemStatus, ItemStatus], tuple[str, ...]] = {
    (ItemStatus.PENDING, ItemStatus.LEASED): ("claim",),
    (ItemStatus.LEASED, ItemStatus.RUNNING): ("start",),
    (ItemStatus.RUNNING, ItemStatus.LEASED): ("reclaim",),
    (ItemStatus.LEASED, ItemStatus.PENDING): ("release",),
    (ItemStatus.RUNNING, ItemStatus.PENDING): ("release",),
    # finished before its start was written, or refused before the downloader
    (ItemStatus.LEASED, ItemStatus.COMPLETED): ("finish_items",),
    (ItemStatus.LEASED, ItemStatus.FAILED): ("finish_items", "give_up"),
    (ItemStatus.RUNNING, ItemStatus.COMPLETED): ("finish_items",),
    (ItemStatus.RUNNING, ItemStatus.FAILED): ("finish_items", "give_up"),
    # finish_items from pending: a duplicate URL's copy, finished with its original
    (ItemStatus.PENDING, ItemStatus.COMPLETED): ("finish_items",),
    (ItemStatus.PENDING, ItemStatus.FAILED): ("finish_items", "give_up"),
    (ItemStatus.PENDING, ItemStatus.CANCELLED): ("cancel_unfinished",),
    (ItemStatus.LEASED, ItemStatus.CANCELLED): ("cancel_unfinished",),
    (ItemStatus.RUNNING, ItemStatus.CANCELLED): ("cancel_unfinished",),
    (ItemStatus.FAILED, ItemStatus.PENDING): ("retry_failed",),
}
#: operations that add items (pending, or failed INVALID_URL) instead of moving them
CREATIONS: tuple[str, ...] = ("append_items",)
# the fields a failed record keeps from the record it replaces
FAILED_RECORD_KEEPS = (
    "batch_id", "index", "url", "attempts",
    "render_mode", "http_status", "final_url", "duration_ms", "content_truncated",
)


#: a batch document's ``$inc``: counters moved by one write (counts, seconds, dollars)
Increments = dict[str, float]


class HeldItem(TypedDict):
    """An item a worker holds, as :meth:`ItemTransitions.reclaim` reads it."""

    _id: str
    status: str
    lease: NotRequired[Lease]


class TransitionError(ValueError):
    """A status move that :data:`TRANSITIONS` does not allow (a bug, never user input)."""


def check_transition(old: str, new: str) -> None:
    if (old, new) not in TRANSITIONS:
        raise TransitionError(f"an item cannot go from {old!r} to {new!r}")


def counters_for_transition(old: ItemStatus, new: ItemStatus, count: int = 1) -> dict[str, int]:
    """The ``$inc`` that moves ``count`` items from status ``old`` to ``new``."""
    check_transition(old, new)
    if count == 0:
        return {}
    return {f"counters.{old}": -count, f"counters.{new}": count}


class InitialCounters(TypedDict):
    """A new batch's ``counters`` and ``failures`` (failed items per error code)."""

    counters: dict[str, int]
    failures: dict[str, int]


def initial_counters(total: int, failed: Mapping[str, int]) -> InitialCounters:
    """A new batch's ``counters`` and ``failures``: every item pending, except those stored
    failed from the start (``failed``: how many per error code, e.g. ``INVALID_URL``)."""
    dead = sum(failed.values())
    counters = {key: 0 for key in COUNTER_KEYS} | {
        "total": total, "pending": total - dead, "failed": dead}
    return {"counters": counters, "failures": {failure_code({"code": code}): n
                                               for code, n in failed.items() if n}}


def failure_code(error: object) -> str:
    """The key under the batch's ``failures`` that counts failed items with this error
    (``error``: an error object, or None)."""
    code = str((error.get("code") if isinstance(error, Mapping) else None) or "UNKNOWN")
    return re.sub(r"[^A-Za-z0-9_]", "_", code)


def failed_record(record: Mapping[str, object], error: ErrorInfo) -> Document:
    """The failed record that replaces ``record`` when it cannot be stored as it is."""
    kept: Document = {key: record[key] for key in FAILED_RECORD_KEEPS if key in record}
    kept.update(status=ItemStatus.FAILED.value, error=error, data=None, content=None)
    return kept


class ItemTransitions(FinishEvents):
    """The store's status moves (see the module docstring)."""

    def _move(
        self,
        batch_id: str,
        query: Mapping[str, object],
        old: ItemStatus,
        new: ItemStatus,
        update: Mapping[str, object] | None = None,
    ) -> int:
        """Move every item matching ``query`` from ``old`` to ``new``, counters with it.

        The item write names ``old`` as its precondition, and the batch's
        ``counters`` (and ``failures.<CODE>`` for a failure) move by what it
        modified, in the same transaction.
        """
        check_transition(old, new)
        update = dict(update or {})
        # a ``$set`` given here is a document of fields (this module builds every update)
        fields: Document = {**cast("Document", update.get("$set", {})), "status": new.value,
                            "updated_at": utcnow()}
        update["$set"] = fields

        def work(session: ClientSession | None) -> int:
            result = self.items.update_many(
                {**query, "status": old.value}, update, session=session
            )
            inc = counters_for_transition(old, new, result.modified_count)
            if inc and new == ItemStatus.FAILED:
                inc["failures." + failure_code(fields.get("error"))] = result.modified_count
            if inc:
                self.batches.update_one({"_id": batch_id}, {"$inc": inc}, session=session)
            return result.modified_count

        return self._atomic(work)

    def claim(
        self, batch_id: str, worker: str, indexes: range, lease_seconds: float
    ) -> list[Document]:
        """Lease the pending items among ``indexes`` to ``worker``: pending -> leased.

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
        lease: Lease = {
            "worker": worker,
            "token": token,
            "until": now + dt.timedelta(seconds=lease_seconds),
        }
        claimed = self._move(
            batch_id,
            {"_id": {"$in": ids}, "dup_of": {"$exists": False}},
            ItemStatus.PENDING,
            ItemStatus.LEASED,
            {"$set": {"lease": lease, "started_at": now}, "$inc": {"attempts": 1}},
        )
        if not claimed:
            return []
        docs = self.items.find({"_id": {"$in": ids}, "lease.token": token})
        return sorted(docs, key=lambda doc: doc["index"])

    def start(self, batch_id: str, worker: str, ids: list[str]) -> int:
        """leased -> running for this worker's items whose requests reached the downloader."""
        if not ids:
            return 0
        query = {"_id": {"$in": ids}, "lease.worker": worker}
        return self._move(batch_id, query, ItemStatus.LEASED, ItemStatus.RUNNING)

    def reclaim(
        self, batch_id: str, doc: HeldItem, lease: Lease
    ) -> Document | None:
        """Lease a dead worker's item (``doc``, with its expired lease) to another: -> leased.

        The expired lease's token is the precondition: two workers reclaiming
        the same item cannot both get it. Returns the item as leased, or None.
        """
        query: Query = {"_id": doc["_id"], "lease.token": doc["lease"]["token"]}
        update = {"$set": {"lease": lease, "started_at": utcnow()}, "$inc": {"attempts": 1}}
        if doc["status"] == ItemStatus.RUNNING:
            moved = self._move(batch_id, query, ItemStatus.RUNNING, ItemStatus.LEASED, update)
        else:  # still leased: a new lease, no status move
            query["status"] = ItemStatus.LEASED.value
            moved = self.items.update_one(query, update).modified_count
        return self.items.find_one({"_id": doc["_id"]}) if moved else None

    def release(self, batch_id: str, worker: str, ids: list[str]) -> int:
        """leased|running -> pending for items this worker leased but did not finish."""
        if not ids:
            return 0
        query = {"_id": {"$in": ids}, "lease.worker": worker}
        update = {"$unset": {"lease": ""}}
        return sum(self._move(batch_id, query, old, ItemStatus.PENDING, update) for old in HELD)

    def finish_items(self, records: Sequence[Document]) -> list[bool]:
        """leased|running -> completed|failed for each record, in one transaction; copies to
        duplicates.

        Returns, per record, whether it was applied: False (and nothing
        changed) when the item was no longer held — already finished by
        another worker, or cancelled. The batch counters move once per batch.
        In a transaction the item statuses are read first and the writes go
        in one bulk request (its snapshot makes the read hold for the
        writes); without transactions each write carries the precondition
        and reports whether it applied.
        """
        for record in records:
            check_transition(ItemStatus.RUNNING, str(record["status"]))
        self.attach_changes(records)  # read before the transaction: it changes nothing
        ids = [_record_item_id(record) for record in records]

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
                    increments[str(record["batch_id"])].update(inc)
            for batch_id, batch_inc in increments.items():
                changes = {key: value for key, value in batch_inc.items() if value}
                if changes:
                    self.batches.update_one({"_id": batch_id}, {"$inc": changes}, session=session)
            applied = [r for r, inc in zip(records, outcomes, strict=True) if inc is not None]
            self.write_item_events(applied, session)  # in the same transaction as the records
            return [inc is not None for inc in outcomes]

        return self._atomic(work)

    def _finish_in_bulk(
        self, records: Sequence[Document], ids: list[str], session: ClientSession
    ) -> list[Increments | None]:
        current = {
            doc["_id"]: doc
            for doc in self.items.find(
                {"_id": {"$in": ids}}, {"status": 1, "duplicates": 1}, session=session
            )
        }
        copy_ids = {
            _id: _duplicate_ids(record, current[_id].get("duplicates"))
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
        outcomes: list[Increments | None] = []
        for record, _id in zip(records, ids, strict=True):
            old = current.get(_id, {}).get("status")
            if old not in HELD:
                outcomes.append(None)
                continue
            current[_id]["status"] = record["status"]  # the same item twice in one flush
            fields, copy = _record_fields(record)
            writes.append(
                UpdateOne({"_id": _id, "status": old}, {"$set": fields, "$unset": {"lease": ""}})
            )
            copies = [i for i in copy_ids[_id] if i in pending]
            if copies:
                writes.append(
                    UpdateMany({"_id": {"$in": copies}, "status": "pending"}, {"$set": copy})
                )
                pending.difference_update(copies)
            outcomes.append(_finish_increments(record, ItemStatus(old), len(copies)))
        if writes:
            self.items.bulk_write(writes, ordered=True, session=session)
        return outcomes

    def _finish_one(
        self, record: Document, _id: str, session: ClientSession | None
    ) -> Increments | None:
        """Write one item's record; return its counter increments, or None if not held."""
        fields, copy = _record_fields(record)
        written = self.items.find_one_and_update(
            {"_id": _id, "status": {"$in": [status.value for status in HELD]}},
            {"$set": fields, "$unset": {"lease": ""}},
            projection={"duplicates": 1, "status": 1},  # as it was before the write
            session=session,
        )
        if written is None:
            return None
        copies = 0
        if written.get("duplicates"):
            ids = _duplicate_ids(record, written["duplicates"])
            copies = self.items.update_many(
                {"_id": {"$in": ids}, "status": "pending"}, {"$set": copy}, session=session
            ).modified_count
        return _finish_increments(record, ItemStatus(written["status"]), copies)

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
        # an entry that was never a URL (ignore_invalid_urls) stays failed
        query: Query = {"batch_id": batch_id, "status": "failed",
                        "error.code": {"$ne": InvalidURLsError.code}}
        if only_retryable:
            query["error.retryable"] = True
        reset = {
            "$set": {"status": "pending", "updated_at": utcnow()},
            "$unset": {key: "" for key in ("error", "data", "validation", "evidence", "lease",
                                           "change")},
        }

        def work(session: ClientSession | None) -> int:
            errors: Counter[str] = Counter()
            for doc in self.items.find(query, {"error.code": 1, "change.status": 1},
                                       session=session):
                errors["failures." + failure_code(doc.get("error"))] += 1
                errors.update(change_increments(doc, 0))  # its change goes with its record
            moved = self.items.update_many(query, reset, session=session).modified_count
            if moved:
                inc = counters_for_transition(ItemStatus.FAILED, ItemStatus.PENDING, moved)
                inc.update({key: -count for key, count in errors.items()})
                self.batches.update_one(
                    {"_id": batch_id},
                    {
                        "$inc": inc,
                        "$set": {"status": "pending", "finished_at": None},
                    },
                    session=session,
                )
            return moved

        moved = self._atomic(work)
        if not moved:
            raise NothingToRetryError(
                f"batch {batch_id} has no {'retryable ' if only_retryable else ''}failed items"
            )
        return moved

    def append_items(
        self,
        batch_id: str,
        count: int,
        failed: int,
        item_docs: Callable[[int], list[Document]],
        max_total: int,
    ) -> int:
        """New items at the end of a batch (``count``, of which ``failed`` are stored failed
        with ``INVALID_URL``); returns their first index.

        ``item_docs(first)`` makes their documents once their indexes are known. The batch's
        ``total`` is the precondition of the counter write, so concurrent appends get
        consecutive ranges; a finished batch (completed, partial, failed) is reopened:
        ``pending`` again, for a new job. A cancelled batch stays cancelled (INVALID_STATE).
        """

        def work(session: ClientSession | None) -> int:
            while True:
                batch = self.batches.find_one({"_id": batch_id}, session=session)
                if batch is None:
                    raise BatchNotFoundError(f"no batch {batch_id!r}")
                if batch["status"] == "cancelled" or batch.get("cancel_requested"):
                    raise BatchStateError(
                        f"batch {batch_id} is cancelled; URLs cannot be added to it")
                first = batch["counters"]["total"]
                if first + count > max_total:
                    raise TooLargeError(
                        f"urls: the batch would hold {first + count} URLs; the limit is "
                        f"{max_total} (BATCH_MAX_URLS)")
                inc = {"counters.total": count, "counters.pending": count - failed}
                if failed:
                    inc["counters.failed"] = failed
                    inc["failures." + failure_code({"code": InvalidURLsError.code})] = failed
                reopen = {"status": "pending", "finished_at": None} if batch["status"] in (
                    "completed", "partial", "failed") else {}
                update: Query = {"$inc": inc}
                if reopen:
                    update["$set"] = reopen
                reserved = self.batches.update_one(
                    {"_id": batch_id, "counters.total": first, "status": batch["status"]},
                    update, session=session,
                ).modified_count
                if reserved:
                    break
            docs = item_docs(first)
            if batch.get("expires_at") is not None:  # they go with the batch
                for doc in docs:
                    doc["expires_at"] = batch["expires_at"]
            self.items.insert_many(docs, ordered=False, session=session)
            return int(first)

        return self._atomic(work)

    def cancel_unfinished(self, batch_id: str, reason: str) -> int:
        """pending|running -> cancelled for every unfinished item of the batch."""
        return self._end_unfinished(batch_id, ItemStatus.CANCELLED, CancelledError(reason))

    def give_up(self, batch_id: str, resumes: int) -> int:
        """pending|running -> failed with ``WORKER_LOST`` for every unfinished item.

        The reconciler's last resort for a batch whose workers died ``resumes + 1`` times.
        """
        error = WorkerLostError(
            f"the batch's workers died {resumes + 1} times without finishing it"
        )
        return self._end_unfinished(batch_id, ItemStatus.FAILED, error)

    def _end_unfinished(self, batch_id: str, new: ItemStatus, error: ItemError) -> int:
        """Every unfinished item of the batch to ``new``, with ``error``, its lease dropped."""
        update = {
            "$set": {"error": error.to_dict(), "finished_at": utcnow()},
            "$unset": {"lease": ""},
        }
        return sum(
            self._move(batch_id, {"batch_id": batch_id}, old, new, update) for old in UNFINISHED
        )


def _record_item_id(record: Mapping[str, object]) -> str:
    """The ``_id`` of the item an item record is for."""
    return item_id(str(record["batch_id"]), record_index(record))


def _duplicate_ids(record: Mapping[str, object], duplicates: Iterable[int] | None) -> list[str]:
    """The ``_id`` of each of ``duplicates`` (indexes of the record's duplicate URLs)."""
    return [item_id(str(record["batch_id"]), index) for index in duplicates or []]


def _record_fields(record: Mapping[str, object]) -> tuple[Document, Document]:
    """The fields written on the item, and those copied to its duplicates."""
    fields: Document = {k: v for k, v in record.items() if k not in ("batch_id", "index", "url")}
    fields["finished_at"] = fields["updated_at"] = utcnow()
    return fields, {k: v for k, v in fields.items() if k != "attempts"}


def _finish_increments(record: Mapping[str, object], old: ItemStatus, copies: int) -> Increments:
    """Counter increments for one finished item (``old``: its status before) and ``copies``
    duplicates sharing its record."""
    status = ItemStatus(str(record["status"]))
    inc: Increments = {**counters_for_transition(old, status)}
    for key, value in counters_for_transition(ItemStatus.PENDING, status, copies).items():
        inc[key] = inc.get(key, 0) + value
    if status == ItemStatus.COMPLETED and _record_count(record):
        inc["counters.records_extracted"] = _record_count(record) * (1 + copies)
    if status == ItemStatus.FAILED:
        inc["failures." + failure_code(record.get("error"))] = 1 + copies
    inc[timeline_key(utcnow())] = 1 + copies
    inc.update(_usage_increments(record))
    inc.update(_template_increments(record, copies))
    inc.update(_cache_increments(record, copies))
    inc.update(change_increments(record, copies))
    return inc


def timeline_key(when: dt.datetime) -> str:
    """The batch's ``timeline`` bucket of a finish: items finished per UTC minute."""
    return f"timeline.{int(when.timestamp() // 60)}"


def _cache_increments(record: Mapping[str, object], copies: int) -> dict[str, int]:
    """A page served by the fetch cache counts on each item holding its record."""
    counter = {"hit": "counters.cache_hits", "revalidated": "counters.cache_revalidated"}
    cache = record.get("cache")  # hit, revalidated, miss or None
    key = counter.get(cache) if isinstance(cache, str) else None
    return {key: 1 + copies} if key else {}


def _usage_increments(record: Mapping[str, object]) -> Increments:
    """Counter increments for what processing the item cost (LLM use, filtered records)."""
    tokens = record.get("tokens")
    if not isinstance(tokens, Mapping):  # None: no LLM call
        tokens = {}
    usage: Increments = {
        "counters.llm_calls": _number(record, "llm_calls"),
        "counters.llm_seconds": round(_number(record, "llm_ms") / 1000, 3),
        "counters.tokens_in": tokens.get("in", 0),
        "counters.tokens_out": tokens.get("out", 0),
        "counters.cost_usd": _number(record, "cost_usd") or 0.0,
        "counters.records_filtered": _number(record, "filtered_out"),
    }
    return {key: value for key, value in usage.items() if value}


def _number(record: Mapping[str, object], name: str) -> float:
    """A numeric field of the record (a count, milliseconds, dollars); 0 when unset."""
    value = record.get(name)
    return value if isinstance(value, int | float) else 0


def _template_increments(record: Mapping[str, object], copies: int) -> dict[str, int]:
    """Learned templates' counters: pages they extracted, misses, learned ones, audits; each
    also per template, under ``templates.<id>`` (the batch page's templates and hit rates)."""
    extraction = record.get("extraction")
    if not isinstance(extraction, Mapping):  # None: nothing extracted
        extraction = {}
    audit = extraction.get("template_audit") or {}
    served = extraction.get("method") == "template"
    disagreed = bool(audit) and not audit.get("agreed")
    # (batch counter, per-template counter, the template; True: a miss with no template)
    events = (
        ("template_pages", "pages", extraction.get("template") if served else None),
        ("template_misses", "misses", extraction.get("template_miss")),
        ("templates_learned", "learned", extraction.get("template_learned")),
        ("template_audits", "audits", audit.get("template")),
        ("template_disagreements", "disagreements", audit.get("template") if disagreed else None),
    )
    inc: dict[str, int] = {}
    for counter, name, template_id in events:
        if not template_id:
            continue
        inc[f"counters.{counter}"] = 1 + copies
        if isinstance(template_id, str) and TEMPLATE_ID.fullmatch(template_id):
            inc[f"templates.{template_id}.{name}"] = 1 + copies
    return inc


def _record_count(record: Mapping[str, object]) -> int:
    data = record.get("data")
    if isinstance(data, list):
        return len(data)
    return 1 if data else 0
