"""Validate pipeline: coerce records to the batch schema and check them with jsonschema.

The LLM's one repair re-prompt happens in the extract pipeline, which sees
the conversation; this pipeline records the final verdict. On list pages it
also grants records against the batch's ``max_total_items``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from scrapy.crawler import Crawler

from batchscraper.exceptions import EmptyExtractionError, ItemLimitError, ValidationFailedError
from batchscraper.extraction.coerce import coerce_to_schema
from batchscraper.extraction.validation import checker_for
from batchscraper.inputs import DateFilter
from batchscraper.items import PageItem
from batchscraper.llm.ledger import LLMLedger
from batchscraper.llm.merge import is_empty

MAX_REPORTED_ERRORS = 20


class ValidatePipeline:
    """Coerces and validates ``data``; an invalid record keeps its data and fails."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ValidatePipeline:
        return cls(crawler)

    async def process_item(self, item: PageItem) -> PageItem:
        if item.status == "failed" or item.data is None:
            return item
        spider: Any = self.crawler.spider
        schema = spider.batch["schema"]
        many = isinstance(item.data, list)
        records = [
            coerce_to_schema(record, schema) for record in (item.data if many else [item.data])
        ]
        if all(is_empty(record) for record in records):
            item.data = records if many else records[0]
            item.fail(EmptyExtractionError("every extracted field is empty").to_dict())
            return item
        date_filter = spider.options.date_filter
        if date_filter is not None:
            kept = [record for record in records if within(record, date_filter)]
            item.filtered_out = len(records) - len(kept)
            records = kept
        checker = checker_for(item.batch_id, schema)
        errors = [
            error for number, record in enumerate(records)
            for error in checker.errors(record, number)
        ]
        if many and records and not errors:
            records = await self._within_quota(item, spider, records)
            if not records:
                return item
        item.data = records if many else (records[0] if records else None)
        item.validation = {"valid": not errors, "errors": errors[:MAX_REPORTED_ERRORS]}
        if errors:
            first = errors[0]
            item.fail(
                ValidationFailedError(
                    f"{len(errors)} schema error(s); first at {first['path'] or '(root)'}: "
                    f"{first['message']}"
                ).to_dict()
            )
        return item

    async def _within_quota(self, item: PageItem, spider: Any, records: list[Any]) -> list[Any]:
        """The records the batch's ``max_total_items`` still has room for."""
        ledger = LLMLedger(spider.store.db)
        cap = spider.options.max_total_items
        granted = await asyncio.to_thread(
            ledger.reserve_records, item.batch_id, len(records), cap
        )
        if granted < len(records):
            assert self.crawler.stats is not None
            self.crawler.stats.inc_value("batch/validate/over_quota", len(records) - granted)
            item.extraction = {**(item.extraction or {}), "over_quota": len(records) - granted}
        if granted == 0:
            item.data = records
            item.fail(ItemLimitError(
                f"the batch already holds max_total_items={cap} records"
            ).to_dict())
        return records[:granted]


def within(record: Any, date_filter: DateFilter) -> bool:
    """Whether the record's date field lies in the filter's range (undated records stay)."""
    value = record.get(date_filter.field) if isinstance(record, dict) else None
    if not isinstance(value, str):
        return True
    try:
        day = dt.date.fromisoformat(value[:10])
    except ValueError:
        return True
    return (date_filter.start is None or day >= date_filter.start) and (
        date_filter.end is None or day <= date_filter.end
    )
