"""Validate pipeline: coerce records to the batch schema and check them with jsonschema.

The LLM's one repair re-prompt happens in the extract pipeline, which sees
the conversation; this pipeline records the final verdict. On list pages it
also grants records against the batch's ``max_total_items``.

Coercion and validation run off the reactor thread within
``BATCH_VALIDATION_TIMEOUT``: a record that takes longer fails alone with
VALIDATION_TIMEOUT while leases, timeouts and signals keep being served.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from scrapy.crawler import Crawler

from batchscraper.exceptions import EmptyExtractionError, ItemLimitError, ValidationFailedError
from batchscraper.extraction.coerce import coerce_to_schema
from batchscraper.extraction.validation import RecordChecker, RecordError, ValidationSettings
from batchscraper.inputs import DateFilter
from batchscraper.items import PageItem
from batchscraper.llm.merge import is_empty
from batchscraper.run import BatchRun, batch_run
from batchscraper.store.ledger import LLMLedger

MAX_REPORTED_ERRORS = 20


@dataclass
class Verdict:
    """The coerced records of one item (after the date filter) and their schema errors."""

    records: list[Any]
    filtered_out: int = 0
    errors: list[RecordError] = field(default_factory=list)
    empty: bool = False


def verdict(checker: RecordChecker, data: Any, date_filter: DateFilter | None) -> Verdict:
    """Coerce and check one item's records (CPU work: called off the reactor thread)."""
    with checker.bounded():
        records = [coerce_to_schema(record, checker.schema)
                   for record in (data if isinstance(data, list) else [data])]
        if all(is_empty(record) for record in records):
            return Verdict(records, empty=True)
        kept = records if date_filter is None else [
            record for record in records if within(record, date_filter)]
        errors = [error for number, record in enumerate(kept)
                  for error in checker.errors(record, number)]
        return Verdict(kept, len(records) - len(kept), errors)


class ValidatePipeline:
    """Coerces and validates ``data``; an invalid record keeps its data and fails."""

    def __init__(self, crawler: Crawler, run: BatchRun, settings: ValidationSettings) -> None:
        self.crawler = crawler
        self.run = run
        self.settings = settings

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ValidatePipeline:
        return cls(crawler, batch_run(crawler), ValidationSettings.from_settings(crawler.settings))

    async def process_item(self, item: PageItem) -> PageItem:
        if item.status == "failed" or item.data is None:
            return item
        options = self.run.options
        many = isinstance(item.data, list)
        plan = self.run.plan(item.index)
        if plan.schema is None and not self._within_size(item):
            return item
        try:
            checker = self.run.checker(self.settings.timeout, plan.own_schema)
            found = await asyncio.to_thread(
                verdict, checker, item.data, options.date_filter
            )
        except ValidationFailedError as exc:  # VALIDATION_TIMEOUT, or a schema that broke
            item.fail(exc.to_dict())
            return item
        if found.empty:
            item.data = found.records if many else found.records[0]
            item.fail(EmptyExtractionError("every extracted field is empty").to_dict())
            return item
        if options.date_filter is not None:
            item.filtered_out = found.filtered_out
        records, errors = found.records, found.errors
        if many and records and not errors:
            records = await self._within_quota(item, records)
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

    def _within_size(self, item: PageItem) -> bool:
        """A record without a schema is checked as an object of bounded size only."""
        size = len(json.dumps(item.data, ensure_ascii=False, default=str).encode())
        limit = self.settings.free_form_max_bytes
        if size <= limit:
            return True
        item.fail(ValidationFailedError(
            f"the record is {size} bytes; a record without a schema may have"
            f" {limit} (BATCH_FREE_FORM_MAX_BYTES)"
        ).to_dict())
        return False

    async def _within_quota(self, item: PageItem, records: list[Any]) -> list[Any]:
        """The records the batch's ``max_total_items`` still has room for."""
        ledger = LLMLedger(self.run.store.db)
        cap = self.run.options.max_total_items
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
