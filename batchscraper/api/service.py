"""What the API does with MongoDB: blocking pymongo, called through ``deferToThread``.

Item pages read ``index`` ranges (or, with a status filter, the matching
indexes first), never ``skip``; counts come from the batch document's
counters, never from an aggregation over items.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import cast

from batchscraper.api.auth import Caller
from batchscraper.api.compare import compare_spec
from batchscraper.api.config import ApiConfig
from batchscraper.api.itemquery import ItemQuery, matches, sorted_by_field
from batchscraper.api.jobs import new_job_ids
from batchscraper.api.submit import Submission
from batchscraper.changes import CHANGE_STATUSES, CompareSpec
from batchscraper.exceptions import (
    BatchInputError,
    BatchNotFoundError,
    IdempotencyInProgressError,
    InvalidURLsError,
    TooLargeError,
    every_problem,
)
from batchscraper.inputs import BatchSpec, parse_batch, parse_more_urls
from batchscraper.inputs.labels import data_field_paths
from batchscraper.jsontypes import Document, JSONObject, JSONValue
from batchscraper.monitors import read_monitors
from batchscraper.store import BatchStore, utcnow
from batchscraper.store.base import document_id, record_index
from batchscraper.store.idempotency import IdempotencyKeys
from batchscraper.webhooks import check_webhook_target

BATCH_ID = re.compile(r"b_[0-9a-f]{32}")
MAX_IDEMPOTENCY_KEY = 255
LIST_FIELDS = {"schema": 0, "prompt": 0, "options": 0, "webhook": 0, "jobs": 0}
SEARCH_FIELDS = {"name": 1, "tags": 1, "overview": 1, "created_at": 1}


class BatchService:
    """Batches as the API's callers see them, scoped to their owner."""

    def __init__(self, store: BatchStore, config: ApiConfig) -> None:
        self.store = store
        self.config = config
        self.idempotency = IdempotencyKeys(store.db)

    def ensure_indexes(self) -> None:
        """Idempotency keys expire; batch lists filter by owner and status, newest first."""
        self.idempotency.ensure_indexes(self.config.idempotency_ttl)
        self.store.ensure_list_index()

    # -- submit ----------------------------------------------------------------

    def submit(
        self,
        caller: Caller,
        submission: Submission,
        key: str | None,
        *,
        extra: Document | None = None,
        max_urls: int | None = None,
    ) -> tuple[Document, bool]:
        """Store a new batch (or find the one this Idempotency-Key made); (batch, replayed).

        ``extra``: more fields for the batch document (a schedule's run: its tick key).

        The batch is stored with the ids of its jobs, to be queued next: a batch
        whose jobs never got queued (Scrapyd refused, or died first) has none of
        them running, which is what the reconciler looks for.
        """
        key_id = _key_id(caller, key) if key is not None else None
        if key_id is not None:
            replayed = self._replay(key_id, submission.fingerprint)
            if replayed is not None:
                return replayed, True
        spec = self._spec(caller, submission)  # everything is validated before any write
        if max_urls is not None and len(spec.urls) > max_urls:
            raise TooLargeError(
                f"wait: a synchronous answer is for at most {max_urls} URLs "
                f"(BATCH_SYNC_MAX_URLS); this batch has {len(spec.urls)}: submit without wait"
            )
        if submission.webhook is not None:
            check_webhook_target(submission.webhook.url, self.config.webhook_policy)
        if key_id is not None and not self.idempotency.reserve(
                key_id, submission.fingerprint, batch_id=None):
            # a concurrent request with the same key won
            replayed = self._replay(key_id, submission.fingerprint)
            assert replayed is not None
            return replayed, True
        jobs = job_records(new_job_ids(spec.options.parallel_jobs), "submit")
        extra = {
            "jobs": jobs, "idempotency_key": key, "source": "api", **submission.labels.stored(),
            **(extra or {}),
        }
        if submission.webhook is not None:
            extra["webhook"] = submission.webhook.stored()
        if submission.rerun_of is not None:
            extra["rerun_of"] = submission.rerun_of
        compare = self.compare_of(caller, submission, spec)
        if compare is not None:
            extra.update(compare=compare.stored(), changes=dict.fromkeys(CHANGE_STATUSES, 0))
        monitors = read_monitors(submission.monitors, data_field_paths(spec.schema))
        if monitors is not None:
            extra["monitor_rules"] = monitors
        try:
            batch = self.store.create_batch(spec, owner=caller.owner, extra=extra)
        except Exception:
            if key_id is not None:
                self.idempotency.forget(key_id)
            raise
        if key_id is not None:
            self.idempotency.answer(key_id, batch_id=batch["_id"])
        return batch, False

    def _replay(self, key_id: str, fingerprint: str) -> Document | None:
        doc = self.idempotency.find(key_id, fingerprint)
        if doc is None:
            return None
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
            # (stored as the request gave them: JSON)
            schema = cast("JSONValue", source["schema"]) if schema is None else schema
            prompt = cast("JSONValue", source.get("prompt")) if prompt is None else prompt
            options = cast("JSONValue", source["options"]) if options is None else options
        errors: list[BatchInputError] = []  # every refusal of the request, in one answer
        if submission.webhook_error is not None:
            errors.append(submission.webhook_error)
        try:
            spec = parse_batch(urls, schema, prompt, options, self.config.limits)
        except BatchInputError as exc:
            raise every_problem([*errors, exc]) from None
        for check in (
            lambda: self.compare_of(caller, submission, spec),  # a schedule's template too
            lambda: read_monitors(submission.monitors, data_field_paths(spec.schema)),
        ):
            try:
                check()
            except BatchInputError as exc:
                errors.append(exc)
        if errors:
            raise every_problem(errors)
        return spec

    def compare_of(
        self, caller: Caller, submission: Submission, spec: BatchSpec
    ) -> CompareSpec | None:
        """What the batch compares its items with (422 ``INVALID_COMPARE``, 403)."""
        return compare_spec(self.store, caller, submission.compare_to, submission.ignore_fields,
                            spec.schema)

    def _input_urls(self, batch: Document) -> Iterator[JSONValue]:
        """A stored batch's URL list, as it was given (per-URL overrides included)."""
        for item in self.store.iter_items(document_id(batch), page=self.config.stream_chunk):
            url, overrides = str(item["url"]), item.get("request")  # the rest of URL's object
            if overrides and isinstance(overrides, dict):
                yield {"url": url, **cast(JSONObject, overrides)}  # as its input gave them
            else:
                yield url

    def invalid_urls(self, batch: Document) -> list[Document]:
        """The entries kept as failed items by ``ignore_invalid_urls``: index, url, reason."""
        if not cast("dict[str, int]", batch.get("failures") or {}).get(InvalidURLsError.code):
            return []
        docs = self.store.item_fields(document_id(batch), ("index", "url", "error"),
                                      status="failed")
        return [{"index": doc["index"], "url": doc["url"], "reason": error["message"]}
                for doc in sorted(docs, key=lambda doc: doc["index"])
                if (error := doc.get("error")) and error["code"] == InvalidURLsError.code]

    def record_jobs(self, batch_id: str, job_ids: list[str], kind: str) -> None:
        jobs = job_records(job_ids, kind)
        self.store.add_jobs(batch_id, jobs)

    # -- reads -----------------------------------------------------------------

    def get(self, caller: Caller, batch_id: str) -> Document:
        """The batch, if it exists (404) and is the caller's (403)."""
        if not BATCH_ID.fullmatch(batch_id):
            raise BatchNotFoundError(f"no batch {batch_id[:80]!r}")
        batch = self.store.get_batch(batch_id)
        caller.check_access(batch)
        return batch

    def list_batches(
        self, caller: Caller, page: int, limit: int, status: str | None, search: str = "",
        owner: str | None = None,
    ) -> tuple[list[Document], int]:
        """One page of the caller's batches, newest first, and how many there are.

        ``search``: words that must each appear (any case) in the batch's id, name,
        tags, domains or field names. ``owner``: only that owner's (an admin's filter).
        """
        query = caller.owner_query(owner)
        if status is not None:
            query["status"] = status
        if search.strip():
            return self._search(query, search, page, limit)
        return self.store.batch_page(query, LIST_FIELDS, page, limit)

    def _search(
        self, query: Document, search: str, page: int, limit: int
    ) -> tuple[list[Document], int]:
        # the labels are checked here, on the few fields they are in: a regex over several
        # fields is a collection scan on the embedded server anyway
        words = search.casefold().split()
        found = [document_id(doc) for doc in self.store.newest_batches(query, SEARCH_FIELDS)
                 if all(word in searchable_text(doc) for word in words)]
        wanted = found[(page - 1) * limit : page * limit]
        docs = self.store.batches_by_id(wanted, LIST_FIELDS)
        return [docs[batch_id] for batch_id in wanted if batch_id in docs], len(found)

    def items_page(
        self, batch: Document, page: int, limit: int, query: ItemQuery
    ) -> tuple[list[Document], int]:
        """One page of the batch's items that match ``query``, in its order, and how many match."""
        indexes = self._indexes(batch, query)
        first = (page - 1) * limit
        return self._read(batch, indexes[first : first + limit], query), len(indexes)

    def iter_items(self, batch: Document, query: ItemQuery) -> Iterator[list[dict]]:
        """Every matching item of the batch in the query's order, in chunks (for NDJSON)."""
        chunk = self.config.stream_chunk
        indexes = self._indexes(batch, query)
        for first in range(0, len(indexes), chunk):
            docs = self._read(batch, indexes[first : first + chunk], query)
            if docs:
                yield docs

    def _read(
        self, batch: Document, indexes: Sequence[int], query: ItemQuery
    ) -> list[Document]:
        docs = self.store.items_by_index(
            document_id(batch), indexes, query.status, query.projection()
        )
        if query.sort is None and not query.descending:
            return docs  # already in input order
        position = {index: n for n, index in enumerate(indexes)}
        return sorted(docs, key=lambda doc: position[record_index(doc)])

    def _indexes(self, batch: Document, query: ItemQuery) -> Sequence[int]:
        """The input positions of the items that match, in the query's order."""
        total = cast("dict[str, int]", batch["counters"])["total"]
        if query.by_index:
            return range(total - 1, -1, -1) if query.descending else range(total)
        return self._matching_indexes(document_id(batch), query)

    def _matching_indexes(self, batch_id: str, query: ItemQuery) -> list[int]:
        # one indexed condition per read (batch_id with status or with an updated_at range):
        # the embedded server scans the whole collection for a query beyond its index, so
        # the other conditions are checked here
        fields = ["index", "status", "error.code"]
        fields += [f"data.{path}" for path in {query.sort, query.match_field} - {None}]
        docs = [doc for doc in self.store.item_fields(
                    batch_id, fields, status=query.status, updated_after=query.updated_after)
                if matches(doc, query)]
        if query.sort is None:
            return sorted((doc["index"] for doc in docs), reverse=query.descending)
        return sorted_by_field(docs, query.sort, query.descending)

    # -- changes ---------------------------------------------------------------

    def cancel(self, caller: Caller, batch_id: str) -> Document:
        self.get(caller, batch_id)
        return self.store.cancel_batch(batch_id, "batch cancelled through the API")

    def append(
        self, caller: Caller, batch_id: str, urls: JSONValue, key: str | None, fingerprint: str
    ) -> tuple[Document, dict[str, int], bool]:
        """Add ``urls`` to the caller's batch: (the batch, ``{first_index, count}``, replayed).

        The same Idempotency-Key and body answer with the first request's range.
        """
        batch = self.get(caller, batch_id)
        key_id = _key_id(caller, f"{batch_id}/urls\x00{key}") if key is not None else None
        if key_id is not None:
            done = self._appended(key_id, fingerprint)
            if done is not None:
                return batch, done, True
        specs = parse_more_urls(urls, batch, self.config.limits)
        if key_id is not None and not self.idempotency.reserve(
                key_id, fingerprint, batch_id=batch_id, appended=None):
            # a concurrent request with the same key won
            done = self._appended(key_id, fingerprint)
            assert done is not None
            return batch, done, True
        try:
            first = self.store.append_urls(batch_id, specs, self.config.limits.max_urls)
        except Exception:
            if key_id is not None:
                self.idempotency.forget(key_id)
            raise
        appended = {"first_index": first, "count": len(specs)}
        if key_id is not None:
            self.idempotency.answer(key_id, appended=appended)
        return self.store.get_batch(batch_id), appended, False

    def _appended(self, key_id: str, fingerprint: str) -> dict[str, int] | None:
        doc = self.idempotency.find(key_id, fingerprint)
        if doc is None:
            return None
        appended = doc.get("appended")
        if appended is None:
            raise IdempotencyInProgressError(
                "a request with this Idempotency-Key is still being processed")
        return dict(appended)

    def retry(
        self, caller: Caller, batch_id: str, only_retryable: bool
    ) -> tuple[Document, int]:
        self.get(caller, batch_id)
        moved = self.store.retry_failed(batch_id, only_retryable=only_retryable)
        return self.store.get_batch(batch_id), moved


def searchable_text(batch: Document) -> str:
    """What a batch-list search looks in, in lower case."""
    overview = cast("Document", batch.get("overview") or {})
    tags = cast("list[str]", batch.get("tags") or [])
    domains = cast("list[Document]", overview.get("domains") or [])
    fields = cast("list[str]", overview.get("fields") or [])
    parts = [batch["_id"], batch.get("name") or "", *tags,
             *(entry["domain"] for entry in domains), *fields]
    return " ".join(str(part) for part in parts).casefold()


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


def job_records(job_ids: list[str], kind: str) -> list[Document]:
    """How a batch notes its jobs (``kind``: submit, retry or reconcile)."""
    now = utcnow()
    return [{"id": job_id, "kind": kind, "scheduled_at": now} for job_id in job_ids]




def _key_id(caller: Caller, key: str) -> str:
    return f"{caller.owner or ''}\x00{key}"

