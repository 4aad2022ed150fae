"""The one generic spider: works the items of one stored batch.

It never holds the batch's URL list: ``start()`` leases small chunks of
pending items from MongoDB, yields their requests, and waits for room
before leasing more. Several processes (Scrapyd jobs, on one or many nodes)
can work the same batch; leases keep them apart, and the items of a process
that died are taken over once its leases expire.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import scrapy
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.http import Response, TextResponse
from twisted.python.failure import Failure

from batchscraper.downloadermiddlewares.failures import fetch_error_from_failure
from batchscraper.downloadermiddlewares.ssrf import AddressPolicy, guard_policy
from batchscraper.exceptions import (
    BatchError,
    ContentTooLargeError,
    FailFastError,
    FetchBlockedError,
    FetchError,
    UnsupportedContentTypeError,
)
from batchscraper.extraction.structured import map_to_schema, parse_structured_data
from batchscraper.extraction.validation import ValidationSettings, checker_for
from batchscraper.inputs import (
    BatchOptions,
    BatchSpec,
    Limits,
    parse_batch,
    parse_options,
    run_time_options,
)
from batchscraper.items import PageItem
from batchscraper.leasing import Leaser, WorkerConfig
from batchscraper.reextract import stored_page_item
from batchscraper.render import (
    RenderConfig,
    app_shell_reason,
    browser_meta,
    screenshot_from,
)
from batchscraper.run import BatchRun
from batchscraper.store import BatchStore, store_for
from batchscraper.writes import SerialWriter

logger = logging.getLogger(__name__)

# extraction outcomes after an HTTP fetch that send the page to the browser in auto mode
ESCALATE_ON = ("EXTRACTION_FAILED", "EMPTY_EXTRACTION", "VALIDATION_FAILED")
TEXT_CONTENT_TYPES = (
    "text/",
    "application/xhtml",
    "application/xml",
    "application/json",
    "application/ld+json",
    "application/rss",
    "application/atom",
)
BINARY_SNIFF_BYTES = 1024


class BatchSpider(scrapy.Spider):
    """``scrapy crawl batch -a batch_id=...`` or ``-a urls=... -a schema=...``."""

    name = "batch"
    # set by from_crawler, once the batch is open
    config: WorkerConfig
    store: BatchStore
    writer: SerialWriter
    batch: dict[str, Any]
    run: BatchRun
    leaser: Leaser
    render: RenderConfig
    validation: ValidationSettings
    ssrf_policy: AddressPolicy

    def __init__(
        self,
        batch_id: str | None = None,
        spec: BatchSpec | None = None,
        urls: Any = None,
        schema: Any = None,
        prompt: Any = None,
        options: Any = None,
        reextract_from: str | None = None,
        _job: str | None = None,
        **option_args: Any,
    ) -> None:
        super().__init__()
        self.batch_id = batch_id
        self.resumed = batch_id is not None
        self.spec = spec
        self.raw_inputs = {"urls": urls, "schema": schema, "prompt": prompt, "options": options}
        self.option_args = option_args
        self.job_id = _job
        self.reextract_from = reextract_from
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.inflight: dict[int, dict[str, Any]] = {}  # leased items being worked, by index
        self.stop_reason: str | None = None
        self.options = BatchOptions()

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> BatchSpider:
        spider: BatchSpider = super().from_crawler(crawler, *args, **kwargs)
        spider.config = WorkerConfig.from_settings(crawler.settings)
        spider.store = store_for(crawler.settings.get("MONGO_URI") or None)
        spider.writer = SerialWriter(
            spider.store, spider.config.flush_items, spider.config.flush_seconds,
            crawler.settings.getint("BATCH_STORE_RETRIES"),
            crawler.settings.getfloat("BATCH_STORE_RETRY_BACKOFF"),
        )
        spider.batch = spider._open_batch(crawler.settings)
        stored = spider.batch["options"]
        spider.options = parse_options(stored, Limits(max_total_items=stored["max_total_items"]))
        if spider.resumed:  # -a batch_id=... -a concurrency=...: for this run only
            spider.options = run_time_options(spider.options, **spider.option_args)
        assert spider.batch_id is not None
        spider.run = BatchRun(
            batch_id=spider.batch_id, batch=spider.batch, options=spider.options,
            store=spider.store, writer=spider.writer, worker_id=spider.worker_id,
            inflight=spider.inflight, escalation_for=spider.escalation_for, stop=spider.stop,
        )
        spider.leaser = Leaser(
            spider.run, spider.config, stopped=lambda: spider.stop_reason is not None
        )
        spider.render = RenderConfig.from_settings(crawler.settings)
        spider.validation = ValidationSettings.from_settings(crawler.settings)
        spider.ssrf_policy = guard_policy(crawler.settings)
        spider._apply_batch_settings(crawler)
        crawler.signals.connect(spider._on_closed, signal=signals.spider_closed)
        return spider

    # -- set-up ----------------------------------------------------------------

    def _open_batch(self, settings: Any) -> dict[str, Any]:
        """Load the batch named by ``batch_id``, or create it from the CLI inputs."""
        if self.batch_id:
            batch = self.store.get_batch(self.batch_id)
            self.reextract_from = batch.get("reextract_from")
            return batch
        if self.spec is None:
            self.spec = parse_batch(
                limits=Limits.from_settings(settings, read_files=True),
                **self.raw_inputs,
                **self.option_args,
            )
        extra = {"reextract_from": self.reextract_from} if self.reextract_from else None
        batch = self.store.create_batch(self.spec, extra=extra)
        self.batch_id = batch["_id"]
        logger.info("Created batch %s with %d URLs", self.batch_id, len(self.spec.urls))
        return batch

    def _apply_batch_settings(self, crawler: Crawler) -> None:
        """The batch's options become this crawl's settings (before they freeze)."""
        options = self.options
        settings = crawler.settings
        settings.set("CONCURRENT_REQUESTS", options.concurrency, priority="spider")
        settings.set(
            "CONCURRENT_REQUESTS_PER_DOMAIN",
            min(options.concurrency, settings.getint("CONCURRENT_REQUESTS_PER_DOMAIN")),
            priority="spider",
        )
        settings.set("AUTOTHROTTLE_TARGET_CONCURRENCY", float(options.concurrency), "spider")
        settings.set("DOWNLOAD_TIMEOUT", options.timeout_per_url, priority="spider")
        settings.set("RETRY_TIMES", options.retries, priority="spider")
        if options.robots_txt:
            settings.set("ROBOTSTXT_OBEY", True, priority="spider")
        if settings.getbool("BATCH_BROWSER_ENABLED"):
            settings.update(self.render.scrapy_settings(), priority="spider")

    # -- requests --------------------------------------------------------------

    async def start(self) -> AsyncIterator[scrapy.Request | PageItem]:
        """Lease pending items chunk by chunk and yield their requests (or stored pages)."""
        assert self.batch_id is not None
        await self.writer.run(self.store.mark_running, self.batch_id, self.job_id)
        housekeeping = asyncio.ensure_future(self.leaser.housekeeping())
        try:
            async for doc in self.leaser.items():
                if self.reextract_from:  # the page comes from the source batch, not the web
                    yield await asyncio.to_thread(
                        stored_page_item, self.store, self.reextract_from, doc, self.batch_id
                    )
                else:
                    yield self.request_for(doc)
        finally:
            housekeeping.cancel()

    def request_for(self, doc: dict[str, Any], escalation: str | None = None) -> scrapy.Request:
        """The request for a leased item: HTTP fetch, or Chromium when it must render."""
        overrides = doc.get("request") or {}
        timeout = overrides.get("timeout") or self.options.timeout_per_url
        meta: dict[str, Any] = {
            "batch_item": {"index": doc["index"], "url": doc["url"], "attempts": doc["attempts"]},
            "started": time.monotonic(),
            "download_timeout": timeout,
            "max_retry_times": self.options.retries,
        }
        if escalation or self.render_policy(doc) == "always":
            meta.update(browser_meta(overrides, timeout, self.render))
            meta["render_reason"] = escalation or "render_js: always"
        headers = dict(overrides.get("headers") or {})
        if overrides.get("cookies"):
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in overrides["cookies"].items())
        return scrapy.Request(
            doc["url"],
            callback=self.parse,
            errback=self.on_error,
            headers=headers or None,
            meta=meta,
            dont_filter=True,
        )

    def render_policy(self, doc: dict[str, Any]) -> str:
        """``always``, ``never`` or ``auto``: the URL's own ``render_js``, else the batch's."""
        return str((doc.get("request") or {}).get("render_js") or self.options.render_js)

    def escalation_for(self, item: PageItem) -> scrapy.Request | None:
        """In auto mode, a browser request for a fetched page whose extraction came up short."""
        doc = self.inflight.get(item.index)
        if doc is None or item.render_mode != "fetch" or self.render_policy(doc) != "auto":
            return None
        if self.reextract_from or not item.error or item.error["code"] not in ESCALATE_ON:
            return None
        request = self.request_for(doc, escalation=f"auto: {item.error['code']} after fetch")
        # what the fetched attempt cost (LLM use) stays on the item's record
        request.meta["usage"] = {
            "llm_calls": item.llm_calls, "llm_ms": item.llm_ms, "tokens": item.tokens,
            "cost_usd": item.cost_usd,
        }
        return request

    # -- responses -------------------------------------------------------------

    async def parse(self, response: Response) -> PageItem | scrapy.Request:
        item = self._item(response.meta)
        item.http_status = response.status
        item.final_url = response.url
        if "playwright" in response.flags:
            item.render_mode = "headless"
            item.screenshot_png = screenshot_from(response.meta)
        error = self._response_problem(response)
        if error is not None:
            item.fail(error.to_dict())
            return item
        assert isinstance(response, TextResponse)
        item.body = response.text
        doc = self.inflight.get(item.index)
        if item.render_mode == "fetch" and doc and self.render_policy(doc) == "auto":
            reason = app_shell_reason(item.body, self.render.app_shell_max_text)
            if reason:
                if await asyncio.to_thread(self._answers_schema, item.body, item.final_url):
                    self.crawler.stats.inc_value("batch/render/app_shell_answered")
                    return item
                self.crawler.stats.inc_value("batch/render/escalated/app_shell")
                return self.request_for(doc, escalation=f"auto: {reason}")
        return item

    def _answers_schema(self, html: str, url: str) -> bool:
        """Whether the page's structured data alone makes a record that satisfies the schema:
        then the browser could add nothing, and the page is never rendered."""
        schema = self.run.schema
        if self.options.max_items_per_url > 1 or schema is None:
            return False
        assert self.batch_id is not None
        try:
            checker = checker_for(self.batch_id, schema, self.validation.timeout)
            data, _ = map_to_schema(parse_structured_data(html, url), checker.schema)
            return bool(data) and not checker.fields_to_ask(data)
        except BatchError:  # the checker's own failures: the pipelines will say what they are
            return False

    def _response_problem(self, response: Response) -> FetchError | None:
        """Why a downloaded response cannot be used as a page, or None."""
        # a browser's connections are checked and pinned by the egress guard, and its
        # response's address is the guard's own
        if response.ip_address is not None and "playwright" not in response.flags:
            problem = self.ssrf_policy.address_problem(response.ip_address)
            if problem:  # the connection went somewhere the checks did not see
                return FetchBlockedError(problem)
        if len(response.body) > self.render.max_body_bytes:
            return ContentTooLargeError(
                f"page is {len(response.body)} bytes; the limit is {self.render.max_body_bytes}"
            )
        if not isinstance(response, TextResponse) or not _is_text(response):
            content_type = (response.headers.get(b"Content-Type") or b"").decode("latin-1")
            return UnsupportedContentTypeError(
                f"content type {content_type or 'unknown'!r} is not a web page"
            )
        return None

    def on_error(self, failure: Failure) -> PageItem:
        request = failure.request  # type: ignore[attr-defined]
        item = self._item(request.meta)
        error = fetch_error_from_failure(failure)
        item.http_status = error.status
        item.fail(error.to_dict())
        return item

    def _item(self, meta: dict[str, Any]) -> PageItem:
        source = meta["batch_item"]
        assert self.batch_id is not None
        return PageItem(
            batch_id=self.batch_id,
            index=source["index"],
            url=source["url"],
            attempts=source["attempts"] + meta.get("retry_times", 0),
            duration_ms=int((time.monotonic() - meta["started"]) * 1000),
            render_mode="headless" if meta.get("playwright") else "fetch",
            render_reason=meta.get("render_reason"),
            **meta.get("usage", {}),
        )

    # -- housekeeping ------------------------------------------------------------

    def stop(self, reason: str) -> None:
        """Stop leasing and close the crawl (cancel, fail_fast)."""
        if self.stop_reason is None:
            self.stop_reason = reason
            logger.info("Stopping batch %s: %s", self.batch_id, reason)
            assert self.crawler.engine is not None
            self._closing = asyncio.ensure_future(
                self.crawler.engine.close_spider_async(reason=reason)
            )

    def _on_closed(self, spider: scrapy.Spider, reason: str) -> None:
        """Give back unfinished leases, apply fail_fast, and finalize the batch."""
        assert self.batch_id is not None
        self.writer.close()  # queued writes land before the batch is finalized
        store: BatchStore = self.store
        released = self.leaser.release_unfinished()
        if released:
            logger.info("Released %d unfinished items of %s", released, self.batch_id)
        if self.stop_reason == "fail_fast":
            store.cancel_unfinished(
                self.batch_id, "fail_fast: the batch stopped at its first failure"
            )
            store.set_batch_error(
                self.batch_id, FailFastError("stopped at the first failed URL").to_dict()
            )
        status = store.finalize_batch(self.batch_id)
        self.crawler.stats.set_value("batch/status", status or "running")


def _is_text(response: TextResponse) -> bool:
    """A declared text type, and no NUL bytes at the start (binary labelled as HTML).

    UTF-16 and UTF-32 text is full of NUL bytes: its encoding (from a byte order mark or
    the declared charset) vouches for it instead.
    """
    content_type = (response.headers.get(b"Content-Type") or b"").decode("latin-1").lower()
    declared = not content_type or content_type.startswith(TEXT_CONTENT_TYPES)
    if response.encoding.lower().replace("-", "").startswith(("utf16", "utf32")):
        return declared
    return declared and b"\x00" not in response.body[:BINARY_SNIFF_BYTES]
