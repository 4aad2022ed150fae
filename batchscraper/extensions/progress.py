"""Progress on the console while a batch runs, and one summary line at the end."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from twisted.internet import task

from batchscraper.run import BatchRun, batch_run

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressConfig:
    interval: float


class ProgressLog:
    """Logs ``done/total, failed, pages/min, ETA`` every ``BATCH_PROGRESS_INTERVAL`` seconds.

    Figures come from the batch document's counters, so they cover every
    process working the batch, not only this one.
    """

    def __init__(self, crawler: Crawler, run: BatchRun, config: ProgressConfig) -> None:
        self.crawler = crawler
        self.run = run
        self.config = config
        self.started = time.monotonic()
        self.done_at_start = 0
        self.loop: task.LoopingCall | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ProgressLog:
        interval = crawler.settings.getfloat("BATCH_PROGRESS_INTERVAL")
        if interval <= 0:
            raise NotConfigured
        extension = cls(crawler, batch_run(crawler), ProgressConfig(interval=interval))
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def spider_opened(self) -> None:
        self.started = time.monotonic()
        self.done_at_start = _done(self.run.batch["counters"])
        self.loop = task.LoopingCall(self.log_progress)
        self.loop.start(self.config.interval, now=False)

    def log_progress(self) -> None:
        counters = self.run.store.get_batch(self.run.batch_id)["counters"]
        line = progress_line(self.run.batch_id, counters, self._rate(counters))
        stats = self.crawler.stats
        assert stats is not None
        llm = (stats.get_value("batch/llm/in_flight", 0), stats.get_value("batch/llm/waiting", 0))
        if any(llm):
            line += f", LLM {llm[0]} in flight, {llm[1]} waiting"
        logger.info("%s", line)

    def spider_closed(self, reason: str) -> None:
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        batch = self.run.store.get_batch(self.run.batch_id)
        c = batch["counters"]
        logger.info(
            "Batch %s %s (%s): %d total, %d completed, %d failed, %d cancelled, %d pending, "
            "%d records, %.1fs",
            self.run.batch_id,
            batch["status"],
            reason,
            c["total"],
            c["completed"],
            c["failed"],
            c["cancelled"],
            c["pending"] + c.get("leased", 0) + c["running"],
            c["records_extracted"],
            time.monotonic() - self.started,
        )

    def _rate(self, counters: dict[str, int]) -> float:
        """Pages per minute since this process started."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return (_done(counters) - self.done_at_start) * 60 / elapsed


def _done(counters: dict[str, int]) -> int:
    return counters["completed"] + counters["failed"] + counters["cancelled"]


def progress_line(batch_id: str, counters: dict[str, int], pages_per_minute: float) -> str:
    """``b_…: 120/200 done (60%), 3 failed, 8 running, 24 leased, 840 pages/min, ETA 6s``.

    ``running``: requests in flight; ``leased``: items this batch's workers hold, waiting.
    """
    total = counters["total"]
    done = _done(counters)
    left = total - done
    eta = f"{left * 60 / pages_per_minute:.0f}s" if pages_per_minute > 0 else "?"
    percent = 100 * done // total if total else 100
    return (
        f"{batch_id}: {done}/{total} done ({percent}%), {counters['failed']} failed, "
        f"{counters['running']} running, {counters.get('leased', 0)} leased, "
        f"{pages_per_minute:.0f} pages/min, ETA {eta}"
    )
