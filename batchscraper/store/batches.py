"""Batch lifecycle: create, run, finish, cancel and retry a batch."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Mapping

from pymongo import ReturnDocument
from pymongo.client_session import ClientSession
from pymongo.errors import DuplicateKeyError

from batchscraper.events import batch_started_event
from batchscraper.exceptions import BatchStateError, ErrorInfo, InvalidURLsError
from batchscraper.inputs import BatchSpec, UrlSpec
from batchscraper.inputs.labels import batch_overview
from batchscraper.jsontypes import Document, Query
from batchscraper.monitors import alert_event, monitor_results
from batchscraper.proxies import SECRETS, redacted, secrets_document
from batchscraper.store.base import (
    FINAL_BATCH_STATUSES,
    final_status,
    item_id,
    utcnow,
)
from batchscraper.store.outbox import OUTBOX
from batchscraper.store.transitions import ItemTransitions, initial_counters
from batchscraper.webhooks import OutboxEvent, batch_completed_event

INSERT_CHUNK = 1_000
EXPIRING = "expiring"  # {_id: batch id, expires_at}: what the retention sweep will remove


def new_batch_id() -> str:
    return f"b_{uuid.uuid4().hex}"


class BatchLifecycle(ItemTransitions):
    """Batch documents from creation to a final status, with their items' moves."""

    def create_batch(
        self, spec: BatchSpec, *, owner: str | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> Document:
        """Store a batch and one pending item per URL; return the batch document.

        Items go in first and the batch document last, so a failure half-way
        leaves no visible batch (and its items are removed).
        """
        batch_id = new_batch_id()
        now = utcnow()
        total = len(spec.urls)
        expires_in = spec.options.expires_in
        expires_at = now + dt.timedelta(seconds=expires_in) if expires_in else None
        batch: Document = {
            "_id": batch_id,
            "status": "pending",
            "created_at": now,
            "started_at": None,
            "finished_at": None,
            "owner": owner,
            "schema": spec.schema,
            "prompt": spec.prompt,
            "options": spec.options.to_dict(),
            # failed items per error code under "failures"
            **initial_counters(total, {InvalidURLsError.code: invalid_count(spec)}),
            "error": None,
            "overview": batch_overview(spec),
            "expires_at": expires_at,  # a TTL index removes it then (and the retention sweep)
            **(extra or {}),
        }
        first_of, copies = duplicate_groups(spec)  # once per batch, not per chunk
        secrets = secrets_document(
            batch_id, owner, spec.options.proxy,
            {index: url.proxy for index, url in enumerate(spec.urls) if url.proxy},
        )
        try:
            if secrets is not None:
                self.db[SECRETS].insert_one(secrets)
            for start in range(0, total, INSERT_CHUNK):
                docs = self._item_docs(batch_id, spec, first_of, copies, start, INSERT_CHUNK)
                if expires_at is not None:
                    for doc in docs:
                        doc["expires_at"] = expires_at
                self.items.insert_many(docs, ordered=False)
            if expires_at is not None:  # the sweep finds it here even once TTL removed the batch
                self.db[EXPIRING].insert_one({"_id": batch_id, "expires_at": expires_at})
            self.batches.insert_one(batch)
        except Exception:
            self.items.delete_many({"batch_id": batch_id})
            self.db[SECRETS].delete_one({"_id": batch_id})
            self.db[EXPIRING].delete_one({"_id": batch_id})
            raise
        return batch

    def proxy_secrets(self, batch_id: str) -> Document | None:
        """The batch's proxy URLs with their credentials (never served by the API)."""
        return self.db[SECRETS].find_one({"_id": batch_id})

    def append_urls(self, batch_id: str, urls: list[UrlSpec], max_total: int) -> int:
        """Add ``urls`` after the batch's items (reopening it if it ended); their first index.

        Duplicates among them share a fetch, as in a new batch.
        """
        spec = BatchSpec(urls=urls, schema=None)
        first_of, copies = duplicate_groups(spec)
        failed = invalid_count(spec)
        return self.append_items(
            batch_id, len(urls), failed,
            lambda first: self._item_docs(batch_id, spec, first_of, copies, 0, len(urls), first),
            max_total,
        )

    @staticmethod
    def _item_docs(
        batch_id: str,
        spec: BatchSpec,
        first_of: dict[int, int],
        copies: dict[int, list[int]],
        start: int,
        count: int,
        offset: int = 0,
    ) -> list[Document]:
        """The pending item documents of ``count`` URLs from ``start``; ``offset``: the batch
        index of ``spec.urls[0]`` (URLs appended to a batch)."""
        docs = []
        for position in range(start, min(start + count, len(spec.urls))):
            url = spec.urls[position]
            index = offset + position
            doc: Document = {
                "_id": item_id(batch_id, index),
                "batch_id": batch_id,
                "index": index,
                "url": url.url,
                "status": "pending",
                "attempts": 0,
            }
            if url.invalid is not None:  # kept as a failed item (ignore_invalid_urls)
                error = InvalidURLsError(url.invalid).to_dict()
                doc.update(status="failed", error=error, finished_at=utcnow(), data=None)
                docs.append(doc)
                continue
            overrides = url.request()
            if url.proxy:
                overrides["proxy"] = redacted(url.proxy)
            if overrides:
                doc["request"] = overrides
            if position in first_of:
                doc["dup_of"] = offset + first_of[position]
            elif position in copies:
                doc["duplicates"] = [offset + i for i in copies[position]]
            docs.append(doc)
        return docs

    def mark_running(self, batch_id: str, job_id: str | None = None) -> None:
        """pending (or a re-run of a finished batch) -> running; its ``batch.started`` event."""
        update: Query = {"status": "running", "finished_at": None}
        if job_id:
            update["job_id"] = job_id
        batch = self.batches.find_one_and_update(
            {"_id": batch_id, "status": {"$ne": "cancelled"}},
            [{"$set": {**update, "started_at": {"$ifNull": ["$started_at", utcnow()]}}}],
            return_document=ReturnDocument.AFTER,
        )
        event = batch_started_event(batch) if batch is not None else None
        if event is not None:  # one per run: a second job of the run fails on its _id
            with contextlib.suppress(DuplicateKeyError):
                self.db[OUTBOX].insert_one(event)

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

    def cancel_batch(self, batch_id: str, reason: str = "batch cancelled") -> Document:
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
            alert = self._judge_monitors(batch, session)  # first: batch.completed shows them
            events = [batch_completed_event(batch), alert]
            for event in events:
                if event is not None:
                    self.db[OUTBOX].insert_one(event, session=session)
            return True

        return self._atomic(work)

    def _judge_monitors(
        self, batch: Document, session: ClientSession | None
    ) -> OutboxEvent | None:
        """Store the results of the batch's monitors (not for a cancelled batch); its
        ``batch.alert`` event, if one failed and the webhook asked for it."""
        rules = batch.get("monitor_rules")
        if not rules or not isinstance(rules, Mapping) or batch["status"] == "cancelled":
            return None
        fields = {f"data.{field}": 1 for field in rules.get("min_field_coverage") or {}}
        datas = (
            doc.get("data")
            for doc in self.items.find({"batch_id": batch["_id"], "status": "completed"},
                                       {"_id": 0, **fields}, session=session)
        ) if fields else iter(())
        results = batch["monitors"] = monitor_results(batch, datas)
        self.batches.update_one({"_id": batch["_id"]}, {"$set": {"monitors": results}},
                                session=session)
        return alert_event(batch, results)

    def cancel_requested(self, batch_id: str) -> bool:
        batch = self.batches.find_one({"_id": batch_id}, {"status": 1, "cancel_requested": 1})
        return bool(batch and (batch.get("cancel_requested") or batch["status"] == "cancelled"))

    def set_batch_error(self, batch_id: str, error: ErrorInfo) -> None:
        self.batches.update_one({"_id": batch_id}, {"$set": {"error": error}})

    def add_jobs(self, batch_id: str, jobs: list[Document]) -> None:
        """Note Scrapyd jobs queued for the batch (submit, retry, reconcile)."""
        self.batches.update_one({"_id": batch_id}, {"$push": {"jobs": {"$each": jobs}}})


def invalid_count(spec: BatchSpec) -> int:
    """Entries of the list that are not URLs (kept with ``ignore_invalid_urls``)."""
    return sum(url.invalid is not None for url in spec.urls)


def duplicate_groups(spec: BatchSpec) -> tuple[dict[int, int], dict[int, list[int]]]:
    """Duplicate URLs of a batch: each duplicate's first index, and each first's duplicates."""
    first_index: dict[str, int] = {}
    first_of: dict[int, int] = {}
    copies: dict[int, list[int]] = {}
    for index, url in enumerate(spec.urls):
        if url.invalid is not None:
            continue
        first = first_index.setdefault(url.fetch_key(), index)
        if first != index:
            first_of[index] = first
            copies.setdefault(first, []).append(index)
    return first_of, copies
