"""Escalation pipeline: in ``render_js: auto``, a page fetched over HTTP whose extraction
came up short is rendered in the browser instead of being stored.

Between validation (which decides the outcome) and storage: the item is
dropped, and the spider's browser request for it goes back to the engine.
"""

from __future__ import annotations

from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem

from batchscraper.items import PageItem
from batchscraper.run import BatchRun, batch_run


class EscalatePipeline:
    """Sends a fetched page to the browser when the spider says it should be rendered."""

    def __init__(self, crawler: Crawler, run: BatchRun) -> None:
        self.crawler = crawler
        self.run = run

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> EscalatePipeline:
        return cls(crawler, batch_run(crawler))

    async def process_item(self, item: PageItem) -> PageItem:
        request = self.run.escalation_for(item)
        if request is None:
            return item
        assert self.crawler.stats is not None and self.crawler.engine is not None
        self.crawler.stats.inc_value("batch/render/escalated/extraction")
        self.crawler.engine.crawl(request)
        raise DropItem(f"item {item.index}: rendering in the browser", log_level="DEBUG")
