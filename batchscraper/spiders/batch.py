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
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import scrapy
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.http import Response, TextResponse
from scrapy.settings import BaseSettings
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
from batchscraper.extraction.pdf import PdfLimits, is_pdf, pdf_document
from batchscraper.extraction.structured import map_to_schema, parse_structured_data
from batchscraper.extraction.validation import ValidationSettings, checker_for
from batchscraper.inputs import (
    BatchSpec,
    Limits,
    parse_batch,
    parse_options,
    run_time_options,
)
from batchscraper.items import PageItem
from batchscraper.jsontypes import Document
from batchscraper.leasing import Leaser, WorkerConfig
from batchscraper.proxies import ProxyEndpoint, ProxySource
from batchscraper.reextract import stored_page_item
from batchscraper.render import (
    RenderConfig,
    app_shell_reason,
    browser_meta,
    screenshot_from,
)
from batchscraper.run import BatchRun
from batchscraper.store import BatchStore, store_for
from batchscraper.store.base import document_id, record_index
from batchscraper.store.writes import SerialWriter

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
    # set by from_crawler, once the batch is open; ``run`` holds what the pipelines share
    config: WorkerConfig
    run: BatchRun
    leaser: Leaser
    render: RenderConfig
    validation: ValidationSettings
    ssrf_policy: AddressPolicy
    proxies: ProxySource
    pdf_limits: PdfLimits

    def __init__(
        self,
        batch_id: str | None = None,
        spec: BatchSpec | None = None,
        urls: object = None,  # -a arguments: text (or, from Python, a list or a dict)
        schema: object = None,
        prompt: object = None,
        options: object = None,
        reextract_from: str | None = None,
        _job: str | None = None,
        **option_args: object,
    ) -> None:
        super().__init__()
        self.resume_id = batch_id  # -a batch_id=...: work a stored batch
        self.spec = spec
        self.raw_inputs = {"urls": urls, "schema": schema, "prompt": prompt, "options": options}
        self.option_args = option_args
        self.job_id = _job
        self.reextract_from = reextract_from  # a new batch's source (-a reextract_from=...)
        self.stop_reason: str | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: object, **kwargs: object) -> BatchSpider:
        spider: BatchSpider = super().from_crawler(crawler, *args, **kwargs)
        settings = crawler.settings
        spider.config = WorkerConfig.from_settings(settings)
        store = store_for(settings.get("MONGO_URI") or None)
        writer = SerialWriter(
            store, spider.config.flush_items, spider.config.flush_seconds,
            settings.getint("BATCH_STORE_RETRIES"), settings.getfloat("BATCH_STORE_RETRY_BACKOFF"),
        )
        batch = spider._open_batch(store, settings)
        batch_id = document_id(batch)
        stored = dict(cast(Mapping[str, object], batch["options"]))  # as parse_options made them
        # redacted: the credentials are kept apart
        stored_proxies = cast("list[str] | None", stored.pop("proxy", None))
        limits = Limits(max_total_items=cast(int, stored["max_total_items"]))
        options = parse_options(stored, limits)
        spider.proxies = ProxySource.load(stored_proxies, store.proxy_secrets(batch_id))
        if spider.resume_id is not None:  # -a batch_id=... -a concurrency=...: this run only
            options = run_time_options(options, **spider.option_args)
        spider.run = BatchRun(
            batch_id=batch_id, batch=batch, options=options, store=store, writer=writer,
            worker_id=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}",
            inflight={}, escalation_for=spider.escalation_for, stop=spider.stop,
            stopped=lambda: spider.stop_reason is not None,
        )
        spider.leaser = Leaser(spider.run, spider.config, stopped=spider.run.stopped)
        spider.render = RenderConfig.from_settings(crawler.settings)
        spider.validation = ValidationSettings.from_settings(crawler.settings)
        spider.ssrf_policy = guard_policy(crawler.settings)
        spider.pdf_limits = PdfLimits.from_settings(crawler.settings)
        spider._apply_batch_settings(crawler)
        crawler.signals.connect(spider._on_closed, signal=signals.spider_closed)
        return spider

    # -- set-up ----------------------------------------------------------------

    def _open_batch(self, store: BatchStore, settings: BaseSettings) -> Document:
        """Load the batch named by ``batch_id``, or create it from the CLI inputs."""
        if self.resume_id:
            return store.get_batch(self.resume_id)
        if self.spec is None:
            self.spec = parse_batch(
                limits=Limits.from_settings(settings, read_files=True),
                **self.raw_inputs,
                **self.option_args,
            )
        extra = {"reextract_from": self.reextract_from} if self.reextract_from else None
        batch = store.create_batch(self.spec, extra=extra)
        logger.info("Created batch %s with %d URLs", batch["_id"], len(self.spec.urls))
        return batch

    def _apply_batch_settings(self, crawler: Crawler) -> None:
        """The batch's options become this crawl's settings (before they freeze)."""
        options = self.run.options
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
        run = self.run
        await run.writer.run(run.store.mark_running, run.batch_id, self.job_id)
        housekeeping = asyncio.ensure_future(self.leaser.housekeeping())
        try:
            async for doc in self.leaser.items():
                if run.reextract_from:  # the page comes from the source batch, not the web
                    yield await asyncio.to_thread(
                        stored_page_item, run.store, run.reextract_from, doc, run.batch_id
                    )
                else:
                    yield self.request_for(doc)
        finally:
            housekeeping.cancel()

    def request_for(self, doc: Mapping[str, object], escalation: str | None = None
                    ) -> scrapy.Request:
        """The request for a leased item: HTTP fetch, or Chromium when it must render."""
        overrides = request_overrides(doc)
        timeout = cast(float, overrides.get("timeout") or self.run.options.timeout_per_url)
        meta: dict[str, object] = {
            "batch_item": {"index": doc["index"], "url": doc["url"], "attempts": doc["attempts"]},
            "started": time.monotonic(),
            "download_timeout": timeout,
            "max_retry_times": self.run.options.retries,
        }
        if proxies := self.proxies_for(doc):  # fetched or rendered, through the same proxies
            meta["batch_proxies"] = proxies
        if escalation or self.render_policy(doc) == "always":
            meta.update(browser_meta(overrides, timeout, self.render))
            meta["render_reason"] = escalation or "render_js: always"
        elif self.run.options.max_age:
            meta["max_age"] = self.run.options.max_age
        headers = dict(cast(Mapping[str, str], overrides.get("headers") or {}))
        if cookies := cast("Mapping[str, str] | None", overrides.get("cookies")):
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        return scrapy.Request(
            str(doc["url"]),
            callback=self.parse,
            errback=self.on_error,
            headers=headers or None,
            meta=meta,
            dont_filter=True,
        )

    def proxies_for(self, doc: Mapping[str, object]) -> tuple[ProxyEndpoint, ...]:
        """The item's own proxies, else the batch's (empty: BATCH_PROXIES, or none)."""
        stored = cast("list[str] | None", request_overrides(doc).get("proxy"))
        return self.proxies.for_item(record_index(doc), stored)

    def render_policy(self, doc: Mapping[str, object]) -> str:
        """``always``, ``never`` or ``auto``: the URL's own ``render_js``, else the batch's."""
        return str(request_overrides(doc).get("render_js") or self.run.options.render_js)

    def escalation_for(self, item: PageItem) -> scrapy.Request | None:
        """In auto mode, a browser request for a fetched page whose extraction came up short."""
        doc = self.run.inflight.get(item.index)
        if doc is None or item.render_mode != "fetch" or self.render_policy(doc) != "auto":
            return None
        if self.run.reextract_from or not item.error or item.error["code"] not in ESCALATE_ON:
            return None
        request = self.request_for(doc, escalation=f"auto: {item.error['code']} after fetch")
        # what the fetched attempt cost (LLM use) stays on the item's record
        request.meta["usage"] = {
            "llm_calls": item.llm_calls, "llm_ms": item.llm_ms, "tokens": item.tokens,
            "cost_usd": item.cost_usd, "duration_ms": item.duration_ms or 0,
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
        content_type = (response.headers.get(b"Content-Type") or b"").decode("latin-1")
        pdf = "playwright" not in response.flags and is_pdf(content_type, response.body)
        error = self._response_problem(response, pdf)
        if error is not None:
            item.fail(error.to_dict())
            return item
        if self.run.options.max_age and "playwright" not in response.flags:
            item.cache = response.meta.get("cache", "miss")
        if pdf:
            return await self._pdf_page(item, response.body)
        assert isinstance(response, TextResponse)
        item.body = response.text
        doc = self.run.inflight.get(item.index)
        if item.render_mode == "fetch" and doc and self.render_policy(doc) == "auto":
            reason = app_shell_reason(item.body, self.render.app_shell_max_text)
            if reason:
                if await asyncio.to_thread(self._answers_schema, item.body, item.final_url):
                    self.crawler.stats.inc_value("batch/render/app_shell_answered")
                    return item
                self.crawler.stats.inc_value("batch/render/escalated/app_shell")
                return self.request_for(doc, escalation=f"auto: {reason}")
        return item

    async def _pdf_page(self, item: PageItem, body: bytes) -> PageItem:
        """A PDF's text and metadata, as the page the pipelines extract from."""
        item.render_mode = "pdf"
        try:
            document = await pdf_document(body, self.pdf_limits)
        except FetchError as exc:
            item.fail(exc.to_dict())
            return item
        item.pdf = document.record()
        item.body = document.to_html()
        self.crawler.stats.inc_value("batch/pdf/pages", len(document.pages_text))
        return item

    def _answers_schema(self, html: str, url: str) -> bool:
        """Whether the page's structured data alone makes a record that satisfies the schema:
        then the browser could add nothing, and the page is never rendered."""
        schema = self.run.schema
        if self.run.options.max_items_per_url > 1 or schema is None:
            return False
        try:
            checker = checker_for(self.run.batch_id, schema, self.validation.timeout)
            data, _ = map_to_schema(parse_structured_data(html, url), checker.schema)
            return bool(data) and not checker.fields_to_ask(data)
        except BatchError:  # the checker's own failures: the pipelines will say what they are
            return False

    def _response_problem(self, response: Response, pdf: bool = False) -> FetchError | None:
        """Why a downloaded response cannot be used as a page, or None."""
        # a browser's connections are checked and pinned by the egress guard, and its
        # response's address is the guard's own
        # nor is a proxy's: the target was checked before the request went to the proxy
        proxied = response.meta.get("proxy") is not None
        if response.ip_address is not None and "playwright" not in response.flags and not proxied:
            problem = self.ssrf_policy.address_problem(response.ip_address)
            if problem:  # the connection went somewhere the checks did not see
                return FetchBlockedError(problem)
        if len(response.body) > self.render.max_body_bytes:
            return ContentTooLargeError(
                f"page is {len(response.body)} bytes; the limit is {self.render.max_body_bytes}"
            )
        if not pdf and (not isinstance(response, TextResponse) or not _is_text(response)):
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
        # an item fetched again in the browser keeps what its first attempt took and cost
        usage = dict(meta.get("usage", {}))
        earlier = usage.pop("duration_ms", 0)
        return PageItem(
            batch_id=self.run.batch_id,
            index=source["index"],
            url=source["url"],
            attempts=source["attempts"] + meta.get("retry_times", 0),
            duration_ms=earlier + int((time.monotonic() - meta["started"]) * 1000),
            render_mode="headless" if meta.get("playwright") else "fetch",
            render_reason=meta.get("render_reason"),
            **usage,
        )

    # -- housekeeping ------------------------------------------------------------

    def stop(self, reason: str) -> None:
        """Stop leasing and close the crawl (cancel, fail_fast)."""
        if self.stop_reason is None:
            self.stop_reason = reason
            logger.info("Stopping batch %s: %s", self.run.batch_id, reason)
            assert self.crawler.engine is not None
            self._closing = asyncio.ensure_future(
                self.crawler.engine.close_spider_async(reason=reason)
            )

    def _on_closed(self, spider: scrapy.Spider, reason: str) -> None:
        """Give back unfinished leases, apply fail_fast, and finalize the batch."""
        run, store = self.run, self.run.store
        run.writer.close()  # queued writes land before the batch is finalized
        released = self.leaser.release_unfinished()
        if released:
            logger.info("Released %d unfinished items of %s", released, run.batch_id)
        if self.stop_reason == "fail_fast":
            store.cancel_unfinished(
                run.batch_id, "fail_fast: the batch stopped at its first failure"
            )
            store.set_batch_error(
                run.batch_id, FailFastError("stopped at the first failed URL").to_dict()
            )
        status = store.finalize_batch(run.batch_id)
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


def request_overrides(doc: Mapping[str, object]) -> Mapping[str, object]:
    """An item document's own request options (``request``: timeout, headers, cookies,
    render_js, proxy...; empty when the URL has none)."""
    overrides = doc.get("request")
    return overrides if isinstance(overrides, Mapping) else {}
