"""What the API does with MongoDB: blocking pymongo, called through ``deferToThread``.

Item pages read ``index`` ranges (or, with a status filter, the matching
indexes first), never ``skip``; counts come from the batch document's
counters, never from an aggregation over items.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError

from batchscraper.api.auth import Caller
from batchscraper.api.config import ApiConfig
from batchscraper.api.jobs import new_job_ids
from batchscraper.api.submit import Submission
from batchscraper.exceptions import (
    BatchInputError,
    BatchNotFoundError,
    IdempotencyConflictError,
    IdempotencyInProgressError,
)
from batchscraper.inputs import BatchSpec, parse_batch
from batchscraper.store import BatchStore, utcnow
from batchscraper.webhooks import check_webhook_target

BATCH_ID = re.compile(r"b_[0-9a-f]{32}")
MAX_IDEMPOTENCY_KEY = 255
LIST_FIELDS = {"schema": 0, "prompt": 0, "options": 0, "webhook": 0, "jobs": 0}


class BatchService:
    """Batches as the API's callers see them, scoped to their owner."""

    def __init__(self, store: BatchStore, config: ApiConfig) -> None:
        self.store = store
        self.config = config
        self.idempotency = store.db["idempotency"]

    def ensure_indexes(self) -> None:
        """Idempotency keys expire; batch lists filter by owner and status, newest first."""
        self.idempotency.create_index("created_at", expireAfterSeconds=self.config.idempotency_ttl)
        self.store.batches.create_index(
            [("owner", ASCENDING), ("status", ASCENDING), ("created_at", DESCENDING)]
        )

    # -- submit ----------------------------------------------------------------

    def submit(
        self, caller: Caller, submission: Submission, key: str | None
    ) -> tuple[dict[str, Any], bool]:
        """Store a new batch (or find the one this Idempotency-Key made); (batch, replayed).

        The batch is stored with the ids of its jobs, to be queued next: a batch
        whose jobs never got queued (Scrapyd refused, or died first) has none of
        them running, which is what the reconciler looks for.
        """
        if key is not None:
            replayed = self._replay(caller, key, submission.fingerprint)
            if replayed is not None:
                return replayed, True
        spec = self._spec(caller, submission)  # everything is validated before any write
        if submission.webhook is not None:
            check_webhook_target(submission.webhook.url, self.config.webhook_policy)
        if key is not None:
            try:
                self.idempotency.insert_one(
                    {
                        "_id": _key_id(caller, key),
                        "fingerprint": submission.fingerprint,
                        "batch_id": None,
                        "created_at": utcnow(),
                    }
                )
            except DuplicateKeyError:  # a concurrent request with the same key won
                replayed = self._replay(caller, key, submission.fingerprint)
                assert replayed is not None
                return replayed, True
        jobs = job_records(new_job_ids(spec.options.parallel_jobs), "submit")
        extra: dict[str, Any] = {"jobs": jobs, "idempotency_key": key, "source": "api"}
        if submission.webhook is not None:
            extra["webhook"] = submission.webhook.stored()
        if submission.rerun_of is not None:
            extra["rerun_of"] = submission.rerun_of
        try:
            batch = self.store.create_batch(spec, owner=caller.owner, extra=extra)
        except Exception:
            if key is not None:
                self.idempotency.delete_one({"_id": _key_id(caller, key)})
            raise
        if key is not None:
            self.idempotency.update_one(
                {"_id": _key_id(caller, key)}, {"$set": {"batch_id": batch["_id"]}}
            )
        return batch, False

    def _replay(self, caller: Caller, key: str, fingerprint: str) -> dict[str, Any] | None:
        doc = self.idempotency.find_one({"_id": _key_id(caller, key)})
        if doc is None:
            return None
        if doc["fingerprint"] != fingerprint:
            raise IdempotencyConflictError(
                "Idempotency-Key was already used with a different request body"
            )
        if doc["batch_id"] is None:
            raise IdempotencyInProgressError(
                "a request with this Idempotency-Key is still being processed"
            )
        return self.store.get_batch(doc["batch_id"])

    def _spec(self, caller: Caller, submission: Submission) -> BatchSpec:
        urls, schema, prompt, options = (
            submission.urls, submission.schema, submission.prompt, submission.options
        )
        if submission.rerun_of is not None:
            source = self.get(caller, submission.rerun_of)
            urls = list(self._input_urls(source))
            schema = source["schema"] if schema is None else schema
            prompt = source.get("prompt") if prompt is None else prompt
            options = source["options"] if options is None else options
        return parse_batch(urls, schema, prompt, options, self.config.limits)

    def _input_urls(self, batch: dict[str, Any]) -> Iterator[Any]:
        """A stored batch's URL list, as it was given (per-URL overrides included)."""
        for item in self.store.iter_items(batch["_id"], page=self.config.stream_chunk):
            overrides = item.get("request")  # what the URL's object gave besides "url"
            yield {"url": item["url"], **overrides} if overrides else item["url"]

    def record_jobs(self, batch_id: str, job_ids: list[str], kind: str) -> None:
        jobs = job_records(job_ids, kind)
        self.store.batches.update_one({"_id": batch_id}, {"$push": {"jobs": {"$each": jobs}}})

    # -- reads -----------------------------------------------------------------

    def get(self, caller: Caller, batch_id: str) -> dict[str, Any]:
        """The batch, if it exists (404) and is the caller's (403)."""
        if not BATCH_ID.fullmatch(batch_id):
            raise BatchNotFoundError(f"no batch {batch_id[:80]!r}")
        batch = self.store.get_batch(batch_id)
        caller.check_access(batch)
        return batch

    def list_batches(
        self, caller: Caller, page: int, limit: int, status: str | None
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of the caller's batches, newest first, and how many there are."""
        query: dict[str, Any] = {} if caller.owner is None else {"owner": caller.owner}
        if status is not None:
            query["status"] = status
        total = self.store.batches.count_documents(query)
        cursor = (
            self.store.batches.find(query, LIST_FIELDS)
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .skip((page - 1) * limit)
            .limit(limit)
        )
        return list(cursor), total

    def items_page(
        self,
        batch: dict[str, Any],
        page: int,
        limit: int,
        status: str | None,
        error_code: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of the batch's items in input order, and how many match."""
        indexes = self._indexes(batch, status, error_code)
        first = (page - 1) * limit
        page_items = self.store.items_by_index(batch["_id"], indexes[first : first + limit], status)
        return page_items, len(indexes)

    def iter_items(
        self, batch: dict[str, Any], status: str | None, error_code: str | None = None
    ) -> Iterator[list[dict]]:
        """Every (matching) item of the batch in input order, in chunks (for the NDJSON stream)."""
        chunk = self.config.stream_chunk
        indexes = self._indexes(batch, status, error_code)
        for first in range(0, len(indexes), chunk):
            docs = self.store.items_by_index(batch["_id"], indexes[first : first + chunk], status)
            if docs:
                yield docs

    def _indexes(
        self, batch: dict[str, Any], status: str | None, error_code: str | None
    ) -> Sequence[int]:
        """The input positions of the items that match, in order (unfiltered: all of them)."""
        if status is None and error_code is None:
            return range(batch["counters"]["total"])
        return self._matching_indexes(batch["_id"], status, error_code)

    def _matching_indexes(
        self, batch_id: str, status: str | None, error_code: str | None
    ) -> list[int]:
        # the code is checked here: a query on a field beyond the (batch_id, status) index
        # makes the embedded server scan the whole collection
        query: dict[str, Any] = {"batch_id": batch_id}
        if status is not None:
            query["status"] = status
        docs = self.store.items.find(query, {"index": 1, "error.code": 1})
        return sorted(
            doc["index"]
            for doc in docs
            if error_code is None or (doc.get("error") or {}).get("code") == error_code
        )

    # -- changes ---------------------------------------------------------------

    def cancel(self, caller: Caller, batch_id: str) -> dict[str, Any]:
        self.get(caller, batch_id)
        return self.store.cancel_batch(batch_id, "batch cancelled through the API")

    def retry(
        self, caller: Caller, batch_id: str, only_retryable: bool
    ) -> tuple[dict[str, Any], int]:
        self.get(caller, batch_id)
        moved = self.store.retry_failed(batch_id, only_retryable=only_retryable)
        return self.store.get_batch(batch_id), moved


def check_idempotency_key(value: bytes | None) -> str | None:
    """The Idempotency-Key header's value, if any; 400 when it is unusable."""
    if value is None:
        return None
    key = value.decode("latin-1").strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise BatchInputError(
            f"Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY} printable characters"
        )
    return key


def job_records(job_ids: list[str], kind: str) -> list[dict[str, Any]]:
    """How a batch notes its jobs (``kind``: submit, retry or reconcile)."""
    now = utcnow()
    return [{"id": job_id, "kind": kind, "scheduled_at": now} for job_id in job_ids]


def _key_id(caller: Caller, key: str) -> str:
    return f"{caller.owner or ''}\x00{key}"

