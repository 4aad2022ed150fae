"""The ``/schedules`` endpoints, and the scheduler loop inside the Scrapyd process.

``scrapyd.conf``::

    [services]
    schedules = batchscraper.api.schedules.Schedules

The first build of :class:`Schedules` also starts :class:`SchedulerLoop`, a
Twisted service like the reconciler: every ``BATCH_SCHEDULE_INTERVAL``
seconds it fires the due ticks (:class:`~batchscraper.schedules.scheduler.Scheduler`,
in a thread) and queues the jobs of the batches they made. A batch stored
whose job could not be queued is resumed by the reconciler, as for
``POST /batches``.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, cast

from twisted.internet import threads
from twisted.internet.threads import deferToThread

from batchscraper.api.app import BatchApi
from batchscraper.api.config import api_settings
from batchscraper.api.http import ApiResource, JsonResponse, query_int
from batchscraper.api.periodic import PeriodicService
from batchscraper.api.resources import queue_jobs
from batchscraper.api.submit import check_body_headers, read_json_body
from batchscraper.api.views import batch_summary, pagination, schedule_of_run
from batchscraper.jsontypes import Document
from batchscraper.schedules.scheduler import ScheduleConfig, Scheduler
from batchscraper.schedules.service import ScheduleService
from batchscraper.schedules.store import ScheduleDocument, ScheduleStore
from batchscraper.store.base import document_id

if TYPE_CHECKING:
    from scrapyd.website import Root
    from twisted.web.resource import Resource
    from twisted.web.server import Request

logger = logging.getLogger(__name__)

_SCHEDULES: weakref.WeakKeyDictionary[BatchApi, ScheduleService] = weakref.WeakKeyDictionary()


def schedule_service(api: BatchApi, root: Root) -> ScheduleService:
    """The application's schedules, and its scheduler loop, built once."""
    if api not in _SCHEDULES:
        config = ScheduleConfig.from_settings(api_settings(root.scheduler.config))
        store = ScheduleStore(api.service.store.db)
        store.ensure_indexes()  # Scrapyd is starting: blocking is fine
        scheduler = Scheduler(store, api.service, config,
                              default_owner=api.keys.default_owner)
        _SCHEDULES[api] = ScheduleService(store, scheduler, api.service)
        if config.enabled:
            SchedulerLoop(scheduler, api).setServiceParent(root.app)
    return _SCHEDULES[api]


class SchedulerLoop(PeriodicService):
    """Fires due ticks every ``interval`` seconds; errors are logged, the next scan runs."""

    name = "batchscraper-scheduler"
    what = "Scheduler scan"

    def __init__(self, scheduler: Scheduler, api: BatchApi) -> None:
        super().__init__(scheduler.config.interval)
        self.scheduler = scheduler
        self.api = api

    async def scan(self) -> None:
        for fired in await threads.deferToThread(self.scheduler.scan):
            if fired.batch_id is not None and fired.job_ids:
                try:
                    queue_jobs(self.api, fired.batch_id, fired.job_ids)
                except Exception as exc:  # stored with its jobs noted: the reconciler starts it
                    logger.warning("Schedule %s: %s", fired.schedule_id, exc)


# -- resources ---------------------------------------------------------------------------


class Schedules(ApiResource):
    """``/schedules``: create (POST) and list (GET); ``/schedules/{id}...`` below it."""

    def __init__(self, root: Root) -> None:
        super().__init__(BatchApi.of(root))
        self.api.register(self)
        self.schedules = schedule_service(self.api, root)

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"":
            return self
        return ScheduleResource(self.api, self.schedules, path.decode("utf-8", "replace"))

    async def handle_POST(self, request: Request) -> JsonResponse:
        caller = self.caller(request)
        body = await _body(self.api, request)
        doc, secret = await deferToThread(self.schedules.create, caller, body)
        states = await deferToThread(self.schedules.last_run_states, [doc])
        answer = schedule_view(doc, states, self.base(request))
        if secret is not None:
            _show_secret(answer, secret)  # shown once, like POST /batches
        return JsonResponse(answer, 201, {"Location": _self_link(answer)})

    async def handle_GET(self, request: Request) -> JsonResponse:
        caller = self.caller(request)
        config = self.api.config
        page = query_int(request, "page", 1, 1, 10**9)
        limit = query_int(request, "limit", config.page_size, 1, config.max_batches_limit)

        def read() -> tuple[list[ScheduleDocument], int, dict[str, Document]]:
            docs, total = self.schedules.page(caller, page, limit)
            return docs, total, self.schedules.last_run_states(docs)

        docs, total, states = await deferToThread(read)
        base = self.base(request)
        return JsonResponse({
            "schedules": [schedule_view(doc, states, base) for doc in docs],
            "pagination": pagination(page, limit, total),
        })


class SchedulePart(ApiResource):
    """A resource of one schedule."""

    def __init__(self, api: BatchApi, schedules: ScheduleService, schedule_id: str) -> None:
        super().__init__(api)
        self.schedules = schedules
        self.schedule_id = schedule_id


class ScheduleResource(SchedulePart):
    """``/schedules/{id}``: read (GET), change (PATCH), delete (DELETE)."""

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"run":
            return ScheduleRun(self.api, self.schedules, self.schedule_id)
        if path == b"runs":
            return ScheduleRuns(self.api, self.schedules, self.schedule_id)
        return super().getChild(path, request)

    async def handle_GET(self, request: Request) -> JsonResponse:
        caller = self.caller(request)

        def read() -> tuple[ScheduleDocument, dict[str, Document]]:
            doc = self.schedules.get(caller, self.schedule_id)
            return doc, self.schedules.last_run_states([doc])

        doc, states = await deferToThread(read)
        return JsonResponse(schedule_view(doc, states, self.base(request)))

    async def handle_PATCH(self, request: Request) -> JsonResponse:
        caller = self.caller(request)
        body = await _body(self.api, request)
        doc, secret = await deferToThread(self.schedules.update, caller, self.schedule_id, body)
        states = await deferToThread(self.schedules.last_run_states, [doc])
        answer = schedule_view(doc, states, self.base(request))
        if secret is not None:
            _show_secret(answer, secret)
        return JsonResponse(answer)

    async def handle_DELETE(self, request: Request) -> JsonResponse:
        caller = self.caller(request)
        doc = await deferToThread(self.schedules.delete, caller, self.schedule_id)
        return JsonResponse({"schedule_id": doc["_id"], "deleted": True})


class ScheduleRun(SchedulePart):
    """``/schedules/{id}/run``: a run now (POST), outside the ticks."""

    async def handle_POST(self, request: Request) -> JsonResponse:
        caller = self.caller(request)
        self.api.jobs.check_available()
        batch = await deferToThread(self.schedules.run_now, caller, self.schedule_id)
        job_ids = [cast(str, job["id"]) for job in cast("list[Document]", batch.get("jobs", []))]
        queue_jobs(self.api, document_id(batch), job_ids)
        answer = {**batch_summary(batch, self.base(request)), "jobs": job_ids,
                  "schedule": schedule_of_run(batch)}
        return JsonResponse(answer, 202, {"Location": _self_link(answer)})


class ScheduleRuns(SchedulePart):
    """``/schedules/{id}/runs``: the schedule's batches, newest first."""

    async def handle_GET(self, request: Request) -> JsonResponse:
        caller = self.caller(request)
        config = self.api.config
        page = query_int(request, "page", 1, 1, 10**9)
        limit = query_int(request, "limit", config.page_size, 1, config.max_batches_limit)
        batches, total = await deferToThread(
            self.schedules.runs, caller, self.schedule_id, page, limit
        )
        base = self.base(request)
        return JsonResponse({
            "schedule_id": self.schedule_id,
            "runs": [run_entry(b, base) for b in batches],
            "pagination": pagination(page, limit, total),
        })


async def _body(api: BatchApi, request: Request) -> object:
    check_body_headers(request, api.config.max_body_bytes)
    content = cast("IO[bytes]", request.content)  # set before a resource renders
    return await deferToThread(read_json_body, content, api.config.max_body_bytes)


# -- views -------------------------------------------------------------------------------


def schedule_links(schedule_id: str, base: str = "") -> dict[str, str]:
    own = f"{base}/schedules/{schedule_id}"
    return {"self": own, "runs": f"{own}/runs", "run": f"{own}/run"}


def schedule_view(
    doc: Mapping[str, object], states: Mapping[str, Document], base: str = ""
) -> dict[str, object]:
    """A schedule as the API shows it: never its webhook secret; its last run's status."""
    template = dict(cast("Document", doc["batch"]))
    webhook = template.get("webhook")
    if isinstance(webhook, dict):
        template["webhook"] = {k: v for k, v in webhook.items() if k != "secret"}
    last = cast("Document | None", doc.get("last_run"))
    if last:
        state = states.get(cast(str, last["batch_id"])) or {}
        last = {**last, "status": state.get("status"), "counters": state.get("counters"),
                "changes": state.get("changes"), "monitors": state.get("monitors")}
    return {
        "schedule_id": doc["_id"],
        "name": doc.get("name"),
        "cron": doc["cron"],
        "timezone": doc["timezone"],
        "catch_up": doc["catch_up"],
        "overlap": doc["overlap"],
        "enabled": doc["enabled"],
        "next_run_at": doc.get("next_run_at") if doc["enabled"] else None,
        "waiting_since_tick": doc.get("held_tick"),
        "last_run": last,
        "last_skip": doc.get("last_skip"),
        "last_error": doc.get("last_error"),
        "counters": doc["counters"],
        "batch": template,
        "created_at": doc["created_at"],
        "updated_at": doc["updated_at"],
        "links": schedule_links(document_id(doc), base),
    }


def run_entry(batch: Document, base: str = "") -> dict[str, object]:
    """One of a schedule's runs: the batch's summary, what made it, the run it compared with,
    its items per change status and its monitor results (null until there are some)."""
    return {
        **batch_summary(batch, base),
        "schedule": schedule_of_run(batch),
        "compare_to": cast("Document", batch.get("compare") or {}).get("to"),
        "changes": batch.get("changes"),
        "monitors": batch.get("monitors"),
    }



def _show_secret(answer: dict[str, object], secret: str) -> None:
    cast("Document", cast("Document", answer["batch"])["webhook"])["secret"] = secret


def _self_link(answer: Mapping[str, object]) -> str:
    return cast("dict[str, str]", answer["links"])["self"]
