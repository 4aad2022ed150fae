"""Per-domain health on the batch document: requests, errors, delay, breaker state.

Every ``BATCH_DOMAIN_HEALTH_INTERVAL`` seconds (and once at the end) this
process's figures for its ``BATCH_DOMAIN_HEALTH_TOP`` busiest domains are
written on the batch (``domains``, merged with the other workers of the same
batch by :meth:`batchscraper.store.BatchStore.save_domain_health`). The
figures come from :mod:`batchscraper.downloadermiddlewares.breaker`, which counts every attempt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.defer import deferred_from_coro
from twisted.internet import defer, task

from batchscraper.downloadermiddlewares.breaker import domain_health
from batchscraper.run import BatchRun, batch_run
from batchscraper.store.results import DomainHealthEntry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DomainHealthConfig:
    interval: float
    top: int


class DomainHealthWriter:
    """Writes the busiest domains' health on the batch document, periodically (not per request)."""

    def __init__(self, crawler: Crawler, run: BatchRun, config: DomainHealthConfig) -> None:
        self.crawler = crawler
        self.run = run
        self.config = config
        self.loop: task.LoopingCall | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> DomainHealthWriter:
        settings = crawler.settings
        interval = settings.getfloat("BATCH_DOMAIN_HEALTH_INTERVAL")
        if interval <= 0 or not settings.getbool("BATCH_BREAKER_ENABLED"):
            raise NotConfigured  # the breaker middleware is what counts
        top = settings.getint("BATCH_DOMAIN_HEALTH_TOP")
        config = DomainHealthConfig(interval=interval, top=top)
        extension = cls(crawler, batch_run(crawler), config)
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def spider_opened(self) -> None:
        self.loop = task.LoopingCall(self.tick)
        self.loop.start(self.config.interval, now=False).addErrback(
            lambda failure: logger.error("Domain health writes stopped: %s", failure.value)
        )

    def tick(self) -> defer.Deferred[None]:
        """One write, on the crawl's store-write thread; a failure is only logged."""
        entries = self._entries()
        if not entries:
            return defer.succeed(None)
        d = deferred_from_coro(
            self.run.writer.run(
                self.run.store.save_domain_health,
                self.run.batch_id, self.run.worker_id, entries, self.config.top,
            )
        )
        return d.addErrback(lambda f: logger.warning("Domain health not written: %s", f.value))

    def spider_closed(self) -> None:
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        entries = self._entries()
        if entries:
            self.run.store.save_domain_health(
                self.run.batch_id, self.run.worker_id, entries, self.config.top
            )

    def _entries(self) -> list[DomainHealthEntry]:
        health = domain_health(self.crawler)
        return health.top(self.config.top) if health is not None else []
