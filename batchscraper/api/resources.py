"""The ``/batches`` endpoints and ``/openapi.json`` (see :mod:`batchscraper.api.openapi`)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import IO, TYPE_CHECKING, Any, cast

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from batchscraper.api.app import BatchApi
from batchscraper.api.changes import Changes
from batchscraper.api.dashboard import ItemScreenshot
from batchscraper.api.http import (
    NDJSON,
    ApiResource,
    JsonResponse,
    query_choice,
    query_int,
    query_text,
    stream_ndjson,
)
from batchscraper.api.itemquery import ItemQuery, read_item_query
from batchscraper.api.jobs import new_job_ids
from batchscraper.api.openapi import openapi_document
from batchscraper.api.service import check_idempotency_key
from batchscraper.api.submit import (
    check_body_headers,
    read_json_body,
    read_submission,
    request_fingerprint,
)
from batchscraper.api.views import (
    batch_detail,
    batch_state,
    batch_summary,
    item_record,
    json_default,
    pagination,
)
from batchscraper.exceptions import BatchInputError, JobNotScheduledError
from batchscraper.inputs.labels import data_field_paths
from batchscraper.jsontypes import Document
from batchscraper.store import FINAL_BATCH_STATUSES
from batchscraper.store.base import document_id

if TYPE_CHECKING:
    from scrapyd.website import Root
    from twisted.web.resource import Resource
    from twisted.web.server import Request

logger = logging.getLogger(__name__)

BATCH_STATUSES = ("pending", "running", *FINAL_BATCH_STATUSES)
MAX_SEARCH = 200
MAX_OWNER = 200


class Batches(ApiResource):
    """``/batches``: submit (POST) and list (GET); ``/batches/{id}...`` below it."""

    def __init__(self, root: Root) -> None:
        super().__init__(BatchApi.of(root))
        self.api.register(self)

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"":
            return self
        return BatchResource(self.api, path.decode("utf-8", "replace"))

    async def handle_POST(self, request: Request) -> JsonResponse:
        caller = self.caller(request)
        config = self.api.config
        check_body_headers(request, config.max_body_bytes)
        content = cast("IO[bytes]", request.content)  # set before a resource renders
        body = await deferToThread(read_json_body, content, config.max_body_bytes)
        submission = read_submission(body)
        key = check_idempotency_key(request.getHeader(b"idempotency-key"))
        wait = query_int(request, "wait", 0, 0, config.sync_max_wait)
        self.api.jobs.check_available()
        batch, replayed = await deferToThread(
            self.api.service.submit, caller, submission, key,
            max_urls=config.sync_max_urls if wait else None,
        )
        batch_id = document_id(batch)
        job_ids = _job_ids(batch)
        if not replayed:  # a replayed batch's jobs were queued by the first request (or not: 503)
            queue_jobs(self.api, batch_id, job_ids)
        answer = batch_summary(batch, self.base(request))
        answer["jobs"] = job_ids
        invalid = await deferToThread(self.api.service.invalid_urls, batch)
        if invalid:
            answer["invalid_urls"] = invalid
        if replayed:
            return JsonResponse(answer, 202, {"Idempotent-Replayed": "true"})
        if submission.webhook is not None:
            webhook = {"url": submission.webhook.url}
            if submission.webhook.generated:
                webhook["secret"] = submission.webhook.secret
            answer["webhook"] = webhook
        location = cast("dict[str, str]", answer["links"])["self"]
        if submission.synchronous and not wait and \
                cast("dict[str, int]", batch["counters"])["total"] <= config.sync_max_urls:
            wait = config.sync_max_wait  # Runo's async_mode: false
        if wait:
            done = await self._results_within(batch_id, wait, request)
            if done is not None:
                return JsonResponse({**answer, **done}, 200, {"Location": location})
        return JsonResponse(answer, 202, {"Location": location})

    async def _results_within(
        self, batch_id: str, seconds: float, request: Request
    ) -> dict[str, object] | None:
        """The batch's state and every record in input order (``results``), if it ends
        within ``seconds``; None when it is still running then (it keeps running)."""
        clock: Any = reactor  # mypy reads IReactorTime's zope methods as taking no self
        deadline = clock.seconds() + seconds
        while True:
            batch = await deferToThread(self.api.service.store.get_batch, batch_id)
            if batch["status"] in FINAL_BATCH_STATUSES:
                break
            if clock.seconds() >= deadline:
                return None
            await deferLater(clock, self.api.config.sync_poll_interval, lambda: None)
        items, _ = await deferToThread(
            self.api.service.items_page, batch, 1, batch["counters"]["total"], ItemQuery()
        )
        answer = batch_summary(batch, self.base(request))
        answer["results"] = [item_record(doc) for doc in items]
        return answer

    async def handle_GET(self, request: Request) -> JsonResponse:
        caller = self.caller(request)
        config = self.api.config
        page = query_int(request, "page", 1, 1, 10**9)
        limit = query_int(request, "limit", config.page_size, 1, config.max_batches_limit)
        status = query_choice(request, "status", BATCH_STATUSES)
        search = query_text(request, "q", MAX_SEARCH)
        owner = query_text(request, "owner", MAX_OWNER).strip() or None
        batches, total = await deferToThread(
            self.api.service.list_batches, caller, page, limit, status, search, owner
        )
        base = self.base(request)
        return JsonResponse(
            {
                "batches": [batch_summary(batch, base) for batch in batches],
                "pagination": pagination(page, limit, total),
            }
        )


class BatchPart(ApiResource):
    """A resource of one batch: ``/batches/{id}`` and below."""

    def __init__(self, api: BatchApi, batch_id: str) -> None:
        super().__init__(api)
        self.batch_id = batch_id


class BatchResource(BatchPart):
    """``/batches/{id}``: status with a page of items (GET), cancel (DELETE)."""

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"items":
            return Items(self.api, self.batch_id)
        if path == b"retry":
            return Retry(self.api, self.batch_id)
        if path == b"changes":
            return Changes(self.api, self.batch_id)
        if path == b"urls":
            return MoreUrls(self.api, self.batch_id)
        return super().getChild(path, request)

    async def handle_GET(self, request: Request) -> JsonResponse:
        caller = self.caller(request)
        config = self.api.config
        page = query_int(request, "page", 1, 1, 10**9)
        # limit=0: the batch's state only (what a poll needs), no items and no inputs
        limit = query_int(request, "limit", config.page_size, 0, config.max_items_limit)

        def read() -> tuple[Document, ItemQuery, list[Document], int, str]:
            as_of = self.api.changes_cursor()
            batch = self.api.service.get(caller, self.batch_id)
            query = read_item_query(request, data_field_paths(batch.get("schema")))
            if limit == 0:
                return batch, query, [], 0, as_of
            items, total = self.api.service.items_page(batch, page, limit, query)
            return batch, query, items, total, as_of

        batch, query, items, total, as_of = await deferToThread(read)
        job_ids = _job_ids(batch)
        active = self.api.jobs.active(job_ids)
        base = self.base(request)
        if limit == 0:
            return JsonResponse(batch_state(batch, active, base, query.include_timeline))
        answer = batch_detail(batch, active, base, query.include_timeline)
        answer["items"] = [item_record(doc) for doc in items]
        answer["items_pagination"] = pagination(page, limit, total)
        answer["as_of"] = as_of
        return JsonResponse(answer)

    async def handle_DELETE(self, request: Request) -> JsonResponse:
        caller = self.caller(request)
        batch = await deferToThread(self.api.service.cancel, caller, self.batch_id)
        stopped = self.api.jobs.cancel(_job_ids(batch))
        answer = batch_summary(batch, self.base(request))
        answer["jobs"] = {"unqueued": stopped.unqueued, "signalled": stopped.signalled}
        return JsonResponse(answer)


class Items(BatchPart):
    """``/batches/{id}/items``: every record in input order, paged or as NDJSON."""

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path:
            return ItemScreenshot(self.api, self.batch_id, path.decode("utf-8", "replace"))
        return self

    async def handle_GET(self, request: Request) -> JsonResponse | None:
        caller = self.caller(request)
        config = self.api.config
        as_of = self.api.changes_cursor()
        batch = await deferToThread(self.api.service.get, caller, self.batch_id)
        accept = (request.getHeader(b"accept") or b"").decode("latin-1")
        stream = NDJSON in accept or query_choice(request, "format", ("json", "ndjson")) == "ndjson"
        page = query_int(request, "page", 1, 1, 10**9)
        limit = query_int(request, "limit", config.page_size, 1, config.max_items_limit)
        query = read_item_query(request, data_field_paths(batch.get("schema")))
        if stream:
            # the stream is the export: every field unless `fields` picks some
            if query.fields is None and not query.include_content:
                query = replace(query, include_content=True)
            await self._stream(request, batch, query)
            return None
        items, total = await deferToThread(
            self.api.service.items_page, batch, page, limit, query
        )
        return JsonResponse(
            {
                "batch_id": batch["_id"],
                "items": [item_record(doc) for doc in items],
                "pagination": pagination(page, limit, total),
                "as_of": as_of,
            }
        )

    async def _stream(self, request: Request, batch: Document, query: ItemQuery) -> None:
        """One JSON record per line, read chunk by chunk, paced by the client."""
        chunks = self.api.service.iter_items(batch, query)

        def next_lines() -> bytes | None:
            docs = next(chunks, None)
            if docs is None:
                return None
            return b"".join(
                json.dumps(item_record(doc), default=json_default).encode() + b"\n"
                for doc in docs
            )

        await stream_ndjson(request, next_lines, document_id(batch))


class Retry(BatchPart):
    """``/batches/{id}/retry``: failed items back to pending, in a new job."""

    async def handle_POST(self, request: Request) -> JsonResponse:
        caller = self.caller(request)
        max_bytes = self.api.config.max_body_bytes
        check_body_headers(request, max_bytes)
        content = cast("IO[bytes]", request.content)  # set before a resource renders
        body = await deferToThread(read_json_body, content, max_bytes, allow_empty=True)
        only_retryable = _retry_options(body)
        self.api.jobs.check_available()
        batch, moved = await deferToThread(
            self.api.service.retry, caller, self.batch_id, only_retryable
        )
        batch_id = document_id(batch)
        job_ids = new_job_ids(_parallel_jobs(batch))
        await deferToThread(self.api.service.record_jobs, batch_id, job_ids, "retry")
        queue_jobs(self.api, batch_id, job_ids)
        answer = batch_summary(batch, self.base(request))
        answer.update(retried=moved, jobs=job_ids)
        return JsonResponse(answer, 202)


class MoreUrls(BatchPart):
    """``/batches/{id}/urls``: URLs appended to the batch (reopened if it ended), in a new job."""

    async def handle_POST(self, request: Request) -> JsonResponse:
        caller = self.caller(request)
        max_bytes = self.api.config.max_body_bytes
        check_body_headers(request, max_bytes)
        content = cast("IO[bytes]", request.content)  # set before a resource renders
        body = await deferToThread(read_json_body, content, max_bytes)
        if not isinstance(body, dict) or set(body) != {"urls"}:
            raise BatchInputError('body: {"urls": [...]} (strings or URL objects)')
        key = check_idempotency_key(request.getHeader(b"idempotency-key"))
        self.api.jobs.check_available()
        batch, appended, replayed = await deferToThread(
            self.api.service.append, caller, self.batch_id, body["urls"], key,
            request_fingerprint(body),
        )
        job_ids: list[str] = []
        if not replayed:
            batch_id = document_id(batch)
            job_ids = new_job_ids(_parallel_jobs(batch))
            await deferToThread(self.api.service.record_jobs, batch_id, job_ids, "append")
            queue_jobs(self.api, batch_id, job_ids)
        answer = batch_summary(batch, self.base(request))
        answer.update(appended=appended, jobs=job_ids)
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        return JsonResponse(answer, 202, headers)


class OpenApi(ApiResource):
    """``/openapi.json``: the OpenAPI 3.1 description of the batch API (no key needed)."""

    key_required = False

    def __init__(self, root: Root) -> None:
        super().__init__(BatchApi.of(root))
        self.api.register(self)

    async def handle_GET(self, request: Request) -> JsonResponse:
        return JsonResponse(openapi_document(self.api.keys.enabled))


def queue_jobs(api: BatchApi, batch_id: str, job_ids: list[str]) -> None:
    """Queue jobs already noted on the batch; 503 ``JOB_NOT_SCHEDULED`` if Scrapyd refuses them.

    The batch is stored either way, with those jobs noted: none of them runs,
    so the reconciler resumes the batch. The caller learns it is stored (its
    id is in the details; the same Idempotency-Key answers with it) and
    should not submit it again.
    """
    try:
        api.jobs.schedule_ids(batch_id, job_ids)
    except Exception as exc:
        logger.error("Batch %s is stored but its jobs %s were not queued: %r", batch_id,
                     job_ids, exc)
        raise JobNotScheduledError(
            f"batch {batch_id} is stored, but Scrapyd could not queue its job now; the "
            "reconciler starts it (BATCH_RECONCILE_*). Do not submit it again: the same "
            "Idempotency-Key answers with this batch",
            details={"batch_id": batch_id},
        ) from None


def _retry_options(body: object) -> bool:
    """``{"only_retryable": bool}``; an empty body means retry every failed item."""
    if body is None:
        return False
    if not isinstance(body, dict) or set(body) - {"only_retryable"}:
        raise BatchInputError('retry body: {"only_retryable": true|false} or empty')
    value = body.get("only_retryable", False)
    if not isinstance(value, bool):
        raise BatchInputError("only_retryable: must be true or false")
    return value


def _parallel_jobs(batch: Document) -> int:
    """How many crawl jobs a batch runs in (its ``options.parallel_jobs``)."""
    return cast(int, cast("Document", batch["options"])["parallel_jobs"])


def _job_ids(batch: Document) -> list[str]:
    return [cast(str, job["id"]) for job in cast("list[Document]", batch.get("jobs", []))]
