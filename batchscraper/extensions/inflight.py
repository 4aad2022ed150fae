"""Which leased items are in flight: leased -> running when their request reaches the downloader.

A worker leases items in chunks and queues their requests in Scrapy's
scheduler; only ``CONCURRENT_REQUESTS`` of them are being downloaded at a time.
The batch's ``leased`` counter holds the ones waiting, ``running`` the ones in
flight (being fetched, rendered or processed). The moves are collected and
written every ``BATCH_INFLIGHT_FLUSH_SECONDS`` (one transaction per flush, on
the crawl's store-write thread), for the items still in flight a whole flush
interval after their request reached the downloader: a page done sooner (most
pages of a fast site) simply goes from leased to its final status, and costs
MongoDB no write for its start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.defer import deferred_from_coro
from twisted.internet import defer, task

from batchscraper.run import BatchRun, batch_run
from batchscraper.store import item_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InFlightConfig:
    flush_seconds: float


class InFlightMarker:
    """Marks this worker's items running as their requests reach the downloader."""

    def __init__(self, run: BatchRun, config: InFlightConfig) -> None:
        self.run = run
        self.config = config
        self.started: list[int] = []  # items that reached the downloader since the last flush
        self.waiting: list[int] = []  # those of the flush before: written if still in flight
        self.loop: task.LoopingCall | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> InFlightMarker:
        settings = crawler.settings
        if not settings.getbool("BATCH_INFLIGHT_ENABLED"):
            raise NotConfigured
        config = InFlightConfig(flush_seconds=settings.getfloat("BATCH_INFLIGHT_FLUSH_SECONDS"))
        extension = cls(batch_run(crawler), config)
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(
            extension.request_reached_downloader, signal=signals.request_reached_downloader
        )
        return extension

    def spider_opened(self) -> None:
        self.loop = task.LoopingCall(self.flush)
        self.loop.start(self.config.flush_seconds, now=False).addErrback(
            lambda failure: logger.error("In-flight marks stopped: %s", failure.value)
        )

    def request_reached_downloader(self, request: Request) -> None:
        source = request.meta.get("batch_item")
        if source is not None and source["index"] in self.run.inflight:
            self.started.append(source["index"])

    def flush(self) -> defer.Deferred[Any]:
        """One write of the starts of the items still in flight since the flush before; a
        failure is only logged."""
        inflight = self.run.inflight
        ids = [item_id(self.run.batch_id, index) for index in self.waiting if index in inflight]
        self.waiting, self.started = self.started, []
        if not ids:
            return defer.succeed(None)
        d = deferred_from_coro(
            self.run.writer.run(self.run.store.start, self.run.batch_id, self.run.worker_id, ids)
        )
        return d.addErrback(lambda f: logger.warning("In-flight marks not written: %s", f.value))

    def spider_closed(self) -> None:
        # what is still leased or running is released when the spider closes
        if self.loop is not None and self.loop.running:
            self.loop.stop()
