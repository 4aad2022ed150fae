"""Validate pipeline: coerce records to the batch schema and check them with jsonschema."""

from __future__ import annotations

import datetime as dt
from typing import Any

from jsonschema import Draft202012Validator
from scrapy.crawler import Crawler

from batchscraper.exceptions import EmptyExtractionError, ValidationFailedError
from batchscraper.extraction.coerce import coerce_to_schema
from batchscraper.inputs import DateFilter
from batchscraper.items import PageItem

MAX_REPORTED_ERRORS = 20


class ValidatePipeline:
    """Coerces and validates ``data``; an invalid record keeps its data and fails."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self._validators: dict[str, Draft202012Validator] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ValidatePipeline:
        return cls(crawler)

    def validator(self, batch_id: str, schema: dict[str, Any]) -> Draft202012Validator:
        """Compiled once per batch, not per item."""
        if batch_id not in self._validators:
            self._validators[batch_id] = Draft202012Validator(
                schema, format_checker=Draft202012Validator.FORMAT_CHECKER
            )
        return self._validators[batch_id]

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
        validator = self.validator(item.batch_id, schema)
        errors = [
            {
                "record": number,
                "path": "/".join(str(p) for p in error.absolute_path),
                "message": error.message,
            }
            for number, record in enumerate(records)
            for error in validator.iter_errors(record)
        ]
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


def is_empty(value: Any) -> bool:
    """True for None, "", [] and {} — and objects whose every field is empty."""
    if isinstance(value, dict):
        return all(is_empty(v) for v in value.values())
    if isinstance(value, list):
        return all(is_empty(v) for v in value)
    return value is None or value == ""


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
