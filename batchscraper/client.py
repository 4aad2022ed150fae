"""A small Python client for the batch HTTP API (standard library only).

>>> client = BatchClient("http://127.0.0.1:6800", api_key="sk_...")
>>> schema = [{"field": "name", "type": "string"}]
>>> batch = client.submit(["https://shop.example/p/1"], schema=schema)
>>> final = client.wait(batch["batch_id"], progress=lambda b: print(b["progress"]["percent"]))
>>> for record in client.iter_items(batch["batch_id"]):
...     print(record["index"], record["status"], record["data"])

Webhook receivers check what they get with :func:`verify_webhook`.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import NotRequired, TypedDict, cast

from batchscraper.jsontypes import JSONObject, JSONValue
from batchscraper.webhooks import DEFAULT_TOLERANCE, verify

DEFAULT_URL = "http://127.0.0.1:6800"
FINAL_STATUSES = ("completed", "partial", "failed", "cancelled")


# The parts of the API's answers that callers read most, typed; each answer holds more (see
# the OpenAPI document at /openapi.json), and those keys are there at run time too.


class Pagination(TypedDict):
    page: int
    limit: int
    total: int
    total_pages: int


class Progress(TypedDict):
    percent: float


class MonitorOutcome(TypedDict):
    """One monitor's result once a batch ended (``min_records``, ``min_field_coverage.price``)."""

    name: str
    value: float
    threshold: float
    ok: bool


class BatchStatus(TypedDict):
    """``GET /batches/{id}`` (and each entry of ``GET /batches``, and the submit answer)."""

    batch_id: str
    status: str  # pending, running, completed, partial, failed, cancelled
    counters: dict[str, int]
    progress: Progress
    monitors: NotRequired[list[MonitorOutcome] | None]


class BatchPage(TypedDict):
    batches: list[BatchStatus]
    pagination: Pagination


class FieldChange(TypedDict, total=False):
    old: JSONValue
    new: JSONValue
    values_omitted: bool  # too large to keep on the change: their sizes instead
    old_bytes: int
    new_bytes: int


class Change(TypedDict, total=False):
    status: str  # new, changed, unchanged, gone
    fields: dict[str, FieldChange]


class ItemRecord(TypedDict):
    """One item's record (``GET /batches/{id}/items``, ``.../changes``)."""

    index: int
    url: str
    status: str
    data: JSONValue
    change: NotRequired[Change]


class LastRun(TypedDict, total=False):
    batch_id: str
    status: str
    monitors: list[MonitorOutcome]


class Schedule(TypedDict):
    schedule_id: str
    name: NotRequired[str | None]
    cron: str
    timezone: str
    enabled: bool
    next_run_at: str | None
    last_run: LastRun | None
    counters: dict[str, int]


class SchedulePage(TypedDict):
    schedules: list[Schedule]
    pagination: Pagination


class RunOf(TypedDict):
    trigger: str  # tick, manual
    tick: str | None


class ScheduleRun(TypedDict):
    batch_id: str
    status: str
    schedule: RunOf
    created_at: str


class ScheduleRuns(TypedDict):
    runs: list[ScheduleRun]
    pagination: Pagination


class Template(TypedDict):
    template_id: str
    status: str
    host: str
    version: int
    hits: int
    misses: int
    hit_rate: float | None
    audits: int
    accuracy: float | None
    fields: list[str]


class TemplatePage(TypedDict):
    templates: list[Template]
    pagination: Pagination


class BatchApiError(Exception):
    """An error answer: HTTP ``status`` and the body's ``code``, ``message``, ``details``."""

    def __init__(self, status: int, code: str, message: str, details: JSONValue = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
) -> JSONObject:
    """Check a received webhook's Standard Webhooks signature and return its payload.

    Pass the raw request body (bytes, or its text, before any JSON parsing) and its headers.
    Raises :class:`batchscraper.exceptions.WebhookVerificationError` when it does not verify.
    """
    return verify(secret, headers, body, tolerance=tolerance)


class BatchClient:
    """Submit, watch, cancel, retry and export batches over HTTP."""

    def __init__(
        self, base_url: str | None = None, api_key: str | None = None, timeout: float = 60.0
    ) -> None:
        self.base_url = (base_url or os.environ.get("BATCHSCRAPER_API_URL") or DEFAULT_URL)
        self.base_url = self.base_url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("BATCHSCRAPER_API_KEY")
        self.timeout = timeout

    # -- endpoints ---------------------------------------------------------------

    def submit(
        self,
        urls: list[JSONValue] | None = None,  # URL strings or {"url", per-URL options} objects
        schema: JSONValue = None,  # a JSON Schema, a field list or a built-in profile name
        *,
        prompt: str | None = None,
        options: JSONObject | None = None,
        webhook: JSONObject | None = None,
        rerun_of: str | None = None,
        idempotency_key: str | None = None,
        name: str | None = None,
        tags: list[str] | None = None,
        compare_to: str | None = None,
        ignore_fields: list[str] | None = None,
        monitors: JSONObject | None = None,
        wait: float | None = None,
    ) -> BatchStatus:
        """``POST /batches``; returns the 202 body (``batch_id``, ``status``, ``total``, ...).

        ``webhook``: ``{"url", "secret", "events": [...], "metadata": {...}}`` (or only a
        ``url``); ``monitors``: rules judged when the batch ends, e.g.
        ``{"min_field_coverage": {"price": 0.98}}``; ``compare_to``: a batch whose records each
        item is compared with (``ignore_fields`` left out). ``wait`` (seconds, at most 60;
        small batches only): the server answers 200 with the ``results`` in input order when
        the batch ends within it, else the usual 202 body.
        """
        body = {
            key: value
            for key, value in (
                ("urls", urls), ("schema", schema), ("prompt", prompt), ("options", options),
                ("webhook", webhook), ("rerun_of", rerun_of), ("name", name), ("tags", tags),
                ("compare_to", compare_to), ("ignore_fields", ignore_fields),
                ("monitors", monitors),
            )
            if value is not None
        }
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return cast(BatchStatus, self._json("POST", f"/batches{_query(wait=wait)}", body, headers))

    def append(
        self, batch_id: str, urls: list[JSONValue], *, idempotency_key: str | None = None
    ) -> JSONObject:
        """``POST /batches/{id}/urls``: URLs added to the batch (reopened if it ended);
        the 202 body says where they went (``appended: {first_index, count}``)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json("POST", f"/batches/{_quote(batch_id)}/urls", {"urls": urls}, headers)

    def get(
        self, batch_id: str, *, page: int = 1, limit: int | None = None, status: str | None = None
    ) -> BatchStatus:
        """``GET /batches/{id}``: status, counters, progress and one page of items."""
        query = _query(page=page, limit=limit, status=status)
        return cast(BatchStatus, self._json("GET", f"/batches/{_quote(batch_id)}{query}"))

    def list(
        self, *, page: int = 1, limit: int | None = None, status: str | None = None,
        search: str | None = None,
    ) -> BatchPage:
        """``GET /batches``: the caller's batches, newest first, with ``pagination``;
        ``search``: words each in the id, name, tags, domains or field names."""
        query = _query(page=page, limit=limit, status=status, q=search)
        return cast(BatchPage, self._json("GET", f"/batches{query}"))

    def cancel(self, batch_id: str) -> JSONObject:
        """``DELETE /batches/{id}``."""
        return self._json("DELETE", f"/batches/{_quote(batch_id)}")

    def retry(self, batch_id: str, *, only_retryable: bool = False) -> JSONObject:
        """``POST /batches/{id}/retry``: failed (or only retryable) items run again."""
        body = {"only_retryable": only_retryable}
        return self._json("POST", f"/batches/{_quote(batch_id)}/retry", body)

    def iter_items(self, batch_id: str, *, status: str | None = None) -> Iterator[ItemRecord]:
        """Every item record in input order, streamed as NDJSON."""
        path = f"/batches/{_quote(batch_id)}/items{_query(status=status)}"
        request = self._request("GET", path, None, {"Accept": "application/x-ndjson"})
        with self._open(request) as response:
            for line in response:
                if line.strip():
                    yield json.loads(line)

    def iter_changes(self, batch_id: str, *, change: str | None = None
                     ) -> Iterator[ItemRecord]:
        """The items that changed against the batch compared with (``change``: statuses,
        comma-separated), in input order, streamed as NDJSON."""
        path = f"/batches/{_quote(batch_id)}/changes{_query(change=change)}"
        request = self._request("GET", path, None, {"Accept": "application/x-ndjson"})
        with self._open(request) as response:
            for line in response:
                if line.strip():
                    yield json.loads(line)

    def wait(
        self,
        batch_id: str,
        *,
        interval: float = 2.0,
        timeout: float | None = None,
        progress: Callable[[BatchStatus], None] | None = None,
    ) -> BatchStatus:
        """Poll until the batch reaches a final status; ``progress`` sees every poll."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch = self.get(batch_id, limit=1)
            if progress is not None:
                progress(batch)
            if batch["status"] in FINAL_STATUSES:
                return batch
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"batch {batch_id} still {batch['status']} after {timeout}s")
            time.sleep(interval)

    # -- schedules ---------------------------------------------------------------

    def create_schedule(
        self,
        cron: str,
        batch: JSONObject,
        *,
        name: str | None = None,
        timezone: str | None = None,
        catch_up: str | None = None,
        overlap: str | None = None,
        enabled: bool | None = None,
    ) -> JSONObject:
        """``POST /schedules``: ``batch`` is a ``POST /batches`` body (or ``{"rerun_of": id}``)."""
        body = {
            key: value
            for key, value in (
                ("cron", cron), ("batch", batch), ("name", name), ("timezone", timezone),
                ("catch_up", catch_up), ("overlap", overlap), ("enabled", enabled),
            )
            if value is not None
        }
        return self._json("POST", "/schedules", body)

    def list_schedules(self, *, page: int = 1, limit: int | None = None) -> SchedulePage:
        """``GET /schedules``: the caller's schedules, newest first."""
        return cast(SchedulePage, self._json("GET", f"/schedules{_query(page=page, limit=limit)}"))

    def get_schedule(self, schedule_id: str) -> Schedule:
        return cast(Schedule, self._json("GET", f"/schedules/{_quote(schedule_id)}"))

    def update_schedule(self, schedule_id: str, **fields: JSONValue) -> Schedule:
        """``PATCH /schedules/{id}``, e.g. ``enabled=False`` to pause."""
        return cast(Schedule, self._json("PATCH", f"/schedules/{_quote(schedule_id)}", fields))

    def delete_schedule(self, schedule_id: str) -> JSONObject:
        return self._json("DELETE", f"/schedules/{_quote(schedule_id)}")

    def run_schedule(self, schedule_id: str) -> JSONObject:
        """``POST /schedules/{id}/run``: a batch from the schedule now (202)."""
        return self._json("POST", f"/schedules/{_quote(schedule_id)}/run")

    def schedule_runs(
        self, schedule_id: str, *, page: int = 1, limit: int | None = None
    ) -> ScheduleRuns:
        """``GET /schedules/{id}/runs``: the schedule's batches, newest first."""
        query = _query(page=page, limit=limit)
        path = f"/schedules/{_quote(schedule_id)}/runs{query}"
        return cast(ScheduleRuns, self._json("GET", path))

    # -- learned templates ----------------------------------------------------------

    def list_templates(
        self, *, page: int = 1, limit: int | None = None, status: str | None = None,
        host: str | None = None, batch_id: str | None = None,
    ) -> TemplatePage:
        """``GET /templates``: the caller's templates, newest first (``batch_id``: the ones
        that batch used or learned)."""
        query = _query(page=page, limit=limit, status=status, host=host, batch_id=batch_id)
        return cast(TemplatePage, self._json("GET", f"/templates{query}"))

    def get_template(self, template_id: str) -> JSONObject:
        """``GET /templates/{id}``: with its selectors (``rules``) and samples."""
        return self._json("GET", f"/templates/{_quote(template_id)}")

    def delete_template(self, template_id: str) -> JSONObject:
        return self._json("DELETE", f"/templates/{_quote(template_id)}")

    # -- transport ---------------------------------------------------------------

    def _json(
        self, method: str, path: str, body: object = None,  # sent as JSON
        headers: dict[str, str] | None = None,
    ) -> JSONObject:
        request = self._request(method, path, body, headers or {})
        with self._open(request) as response:
            answer: JSONObject = json.loads(response.read())  # every endpoint answers an object
            return answer

    def _request(
        self, method: str, path: str, body: object, headers: dict[str, str]
    ) -> urllib.request.Request:
        data = None if body is None else json.dumps(body).encode()
        all_headers = {"Accept": "application/json", **headers}
        if data is not None:
            all_headers["Content-Type"] = "application/json"
        if self.api_key:
            all_headers["Authorization"] = f"Bearer {self.api_key}"
        return urllib.request.Request(
            self.base_url + path, data=data, headers=all_headers, method=method
        )

    def _open(self, request: urllib.request.Request) -> http.client.HTTPResponse:
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            exc.close()
            try:
                error = json.loads(raw)["error"]
            except (ValueError, KeyError, TypeError):
                text = raw[:200].decode("utf-8", "replace")
                raise BatchApiError(exc.code, "HTTP_ERROR", text) from None
            raise BatchApiError(
                exc.code, error["code"], error["message"], error.get("details")
            ) from None


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _query(**params: str | float | None) -> str:
    given = {key: value for key, value in params.items() if value is not None}
    return "?" + urllib.parse.urlencode(given) if given else ""
