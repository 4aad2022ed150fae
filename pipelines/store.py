"""Store pipeline: write each item's record and move the batch counters with it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from itemadapter import ItemAdapter
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem

from batchscraper.items import PageItem
from batchscraper.storable import storable_record

logger = logging.getLogger(__name__)

TRANSIENT_FIELDS = ("body", "screenshot_png")


class StorePipeline:
    """Applies running -> completed|failed in MongoDB; the record then goes on to feeds."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.max_record_bytes = crawler.settings.getint("BATCH_MAX_RECORD_BYTES")

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> StorePipeline:
        return cls(crawler)

    async def process_item(self, item: PageItem) -> PageItem:
        spider: Any = self.crawler.spider
        stats = self.crawler.stats
        assert stats is not None
        retry_in_browser = spider.escalation_for(item)
        if retry_in_browser is not None:
            stats.inc_value("batch/render/escalated/extraction")
            assert self.crawler.engine is not None
            self.crawler.engine.crawl(retry_in_browser)
            raise DropItem(f"item {item.index}: rendering in the browser", log_level="DEBUG")
        if item.screenshot_png:
            item.screenshot = await asyncio.to_thread(
                spider.store.save_screenshot, item.batch_id, item.index, item.screenshot_png
            )
        item.body = None
        record = {k: v for k, v in ItemAdapter(item).items() if k not in TRANSIENT_FIELDS}
        # safe keys, under MongoDB's document size limit (see batchscraper.storable)
        record, too_large = storable_record(record, self.max_record_bytes)
        if too_large is not None:
            item.data = None
            item.fail(too_large)
        try:
            applied = await spider.writer.finish(record)
        finally:
            spider.item_done(item.index)
        if not applied:
            stats.inc_value("batch/store/stale")
            raise DropItem(f"item {item.index} was already finished or cancelled")
        stats.inc_value(f"batch/items/{item.status}")
        if item.error:
            stats.inc_value(f"batch/errors/{item.error['code']}")
            if spider.options.fail_fast:
                spider.stop("fail_fast")
        return item
