"""The batch one crawl works, typed: what the spider shares with its pipelines and extensions.

The spider opens (or creates) the batch in its ``from_crawler`` and builds a
:class:`BatchRun`; Scrapy creates the spider before the extensions and the item
pipelines, so their ``from_crawler`` takes it with :func:`batch_run` instead of
reaching into ``crawler.spider``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

from batchscraper.extraction.validation import RecordChecker, checker_for
from batchscraper.inputs import BatchOptions
from batchscraper.store import BatchStore
from batchscraper.writes import SerialWriter

if TYPE_CHECKING:
    from scrapy import Request

    from batchscraper.items import PageItem


@dataclass
class BatchRun:
    """One crawl of one batch: its stored document and options, the store, and this worker."""

    batch_id: str
    batch: dict[str, Any]  # the batch document as this crawl opened it
    options: BatchOptions
    store: BatchStore
    writer: SerialWriter  # every store write of the crawl goes through it, in order
    worker_id: str
    inflight: dict[int, dict[str, Any]]  # leased items being worked, by index
    # the spider's own decisions: re-render an item in the browser, and stop the crawl
    escalation_for: Callable[[PageItem], Request | None]
    stop: Callable[[str], None]
    _checker: RecordChecker | None = field(default=None, init=False, repr=False)

    @property
    def schema(self) -> dict[str, Any]:
        return dict(self.batch["schema"])

    @property
    def prompt(self) -> str | None:
        return self.batch.get("prompt")

    def checker(self, timeout: float | None) -> RecordChecker:
        """The compiled checker of the batch's schema, built once per crawl.

        ``ValidationFailedError`` when the stored schema cannot be compiled
        (raised again for every item that asks).
        """
        if self._checker is None:
            self._checker = checker_for(self.batch_id, self.schema, timeout)
        return self._checker

    def item_done(self, index: int) -> None:
        """An item's record is written: it no longer holds a lease of this worker."""
        self.inflight.pop(index, None)


def batch_run(crawler: Crawler) -> BatchRun:
    """The crawl's :class:`BatchRun`; ``NotConfigured`` for a crawl of another spider."""
    run = getattr(crawler.spider, "run", None)
    if not isinstance(run, BatchRun):
        raise NotConfigured("only the batch spider runs batchscraper's components")
    return run
