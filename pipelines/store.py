"""Store pipeline: write each item's record and move the batch counters with it."""

from __future__ import annotations

import asyncio
import logging

from itemadapter import ItemAdapter
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem

from batchscraper.items import PageItem
from batchscraper.run import BatchRun, batch_run
from batchscraper.store.storable import storable_record

logger = logging.getLogger(__name__)

TRANSIENT_FIELDS = ("body", "screenshot_png")


class StorePipeline:
    """Applies running -> completed|failed in MongoDB; the record then goes on to feeds."""

    def __init__(self, crawler: Crawler, run: BatchRun, max_record_bytes: int) -> None:
        self.crawler = crawler
        self.run = run
        self.max_record_bytes = max_record_bytes

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> StorePipeline:
        return cls(crawler, batch_run(crawler), crawler.settings.getint("BATCH_MAX_RECORD_BYTES"))

    async def process_item(self, item: PageItem) -> PageItem:
        run = self.run
        stats = self.crawler.stats
        assert stats is not None
        if item.screenshot_png:
            item.screenshot = await asyncio.to_thread(
                run.store.save_screenshot, item.batch_id, item.index, item.screenshot_png
            )
        item.body = None
        record = {k: v for k, v in ItemAdapter(item).items() if k not in TRANSIENT_FIELDS}
        # safe keys, under MongoDB's document size limit (see batchscraper.store.storable)
        record, too_large = storable_record(record, self.max_record_bytes)
        if too_large is not None:
            item.data = None
            item.fail(too_large)
        try:
            applied = await run.writer.finish(record)
        finally:
            run.item_done(item.index)
        if not applied:
            stats.inc_value("batch/store/stale")
            raise DropItem(f"item {item.index} was already finished or cancelled")
        stats.inc_value(f"batch/items/{item.status}")
        if item.error:
            stats.inc_value(f"batch/errors/{item.error['code']}")
            if run.options.fail_fast:
                run.stop("fail_fast")
        return item
