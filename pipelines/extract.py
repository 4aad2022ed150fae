"""Extract pipeline: the page's structured data, mapped onto the batch schema."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from scrapy.crawler import Crawler

from batchscraper.content import page_content
from batchscraper.exceptions import ExtractionError
from batchscraper.extraction.structured import map_to_schema, parse_structured_data
from batchscraper.items import PageItem

logger = logging.getLogger(__name__)


def extract_record(
    html: str, url: str, schema: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The record (and per-field evidence) that the page's structured data gives."""
    return map_to_schema(parse_structured_data(html, url), schema)


class ExtractPipeline:
    """Fills ``data`` and ``evidence`` of each fetched page; keeps ``content`` per ``formats``."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ExtractPipeline:
        return cls(crawler)

    async def process_item(self, item: PageItem) -> PageItem:
        if item.status == "failed" or item.body is None:
            return item
        spider: Any = self.crawler.spider
        url = item.final_url or item.url
        data, evidence = await asyncio.to_thread(
            extract_record, item.body, url, spider.batch["schema"]
        )
        formats = tuple(spider.options.formats)
        if set(formats) - {"json"}:
            item.content = await asyncio.to_thread(page_content, item.body, url, formats)
        stats = self.crawler.stats
        assert stats is not None
        if not data:
            stats.inc_value("batch/extract/empty")
            item.fail(
                ExtractionError(
                    "no structured data in the page (JSON-LD, microdata, OpenGraph)"
                    " matches the schema"
                ).to_dict()
            )
            return item
        for source in evidence.values():
            stats.inc_value(f"batch/extract/fields/{source}")
        item.data = [data] if spider.options.max_items_per_url > 1 else data
        item.evidence = evidence
        return item
