"""The item pipelines in-process, against the embedded MongoDB-wire server.

Each test stores a batch, leases its items the way a worker does, and hands
the pipelines a :class:`BatchRun` on a plain spider; the pipelines' methods
are called directly, without a crawl.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import scrapy
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem, NotConfigured
from scrapy.utils.misc import build_from_crawler
from scrapy.utils.test import get_crawler

from batchscraper import settings as project_settings
from batchscraper.inputs import parse_batch
from batchscraper.items import PageItem
from batchscraper.run import BatchRun
from batchscraper.store import BatchStore
from batchscraper.store.writes import SerialWriter
from pipelines.escalate import EscalatePipeline
from pipelines.extract import ExtractPipeline
from pipelines.store import StorePipeline
from pipelines.validate import ValidatePipeline
from tests.conftest import assert_counters_match_items

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
    "required": ["name", "price"],
}
URLS = [f"https://shop.example/products/{n}" for n in range(3)]
PRODUCT_PAGE = """<html><head><title>Laptop</title>
<script type="application/ld+json">
{"@context": "https://schema.org", "@type": "Product", "name": "Laptop 15",
 "offers": {"@type": "Offer", "price": "1299.00", "priceCurrency": "EUR"}}
</script></head><body><h1>Laptop 15</h1><p>Our best laptop.</p></body></html>"""


class DummySpider(scrapy.Spider):
    name = "dummy"
    run: BatchRun  # what the batch spider shares with its components


@dataclass
class Recorded:
    """What the spider's callables were asked: escalations and stops."""

    escalate: scrapy.Request | None = None
    escalated: list[int] = field(default_factory=list)
    stops: list[str] = field(default_factory=list)

    def escalation_for(self, item: PageItem) -> scrapy.Request | None:
        self.escalated.append(item.index)
        return self.escalate

    def stop(self, reason: str) -> None:
        self.stops.append(reason)


@dataclass
class Setup:
    crawler: Crawler
    run: BatchRun
    recorded: Recorded
    store: BatchStore

    def build(self, pipeline: type[Any]) -> Any:
        return build_from_crawler(pipeline, self.crawler)

    def item(self, index: int = 0, **fields: Any) -> PageItem:
        return PageItem(batch_id=self.run.batch_id, index=index, url=URLS[index], **fields)

    def stored(self, index: int) -> dict[str, Any]:
        (doc,) = self.store.items_by_index(self.run.batch_id, [index])
        return doc

    def stat(self, key: str) -> Any:
        assert self.crawler.stats is not None
        return self.crawler.stats.get_value(key)


def project(**overrides: Any) -> dict[str, Any]:
    """batchscraper/settings.py plus overrides (the reactor is left to get_crawler)."""
    names = [name for name in dir(project_settings) if name.isupper()]
    base = {name: getattr(project_settings, name) for name in names if name != "TWISTED_REACTOR"}
    return {**base, **overrides}


@pytest.fixture()
def make(store: BatchStore, mongo_uri: str) -> Iterator[Callable[..., Setup]]:
    """A stored batch with its items leased to this worker, and a crawler whose spider runs it."""
    writers: list[SerialWriter] = []

    def build(**options: Any) -> Setup:
        spec = parse_batch(json.dumps(URLS), json.dumps(SCHEMA), options=options or None)
        batch = store.create_batch(spec)
        worker = "tests:pipelines"
        leased = store.claim(batch["_id"], worker, range(len(URLS)), 60)
        writer = SerialWriter(store, flush_items=1, flush_seconds=0.01)
        writers.append(writer)
        recorded = Recorded()
        run = BatchRun(
            batch_id=batch["_id"], batch=batch, options=spec.options, store=store,
            writer=writer, worker_id=worker, inflight={doc["index"]: doc for doc in leased},
            escalation_for=recorded.escalation_for, stop=recorded.stop,
        )
        # no LLM endpoint: structured data only
        crawler = get_crawler(DummySpider, project(
            MONGO_URI=mongo_uri, OPENAI_BASE_URL="", OPENAI_API_KEY="",
        ))
        spider = DummySpider.from_crawler(crawler)
        spider.run = run
        crawler.spider = spider
        return Setup(crawler, run, recorded, store)

    yield build
    for writer in writers:
        writer.close()


def test_pipelines_need_a_batch_run() -> None:
    crawler = get_crawler(DummySpider, project())
    crawler.spider = DummySpider.from_crawler(crawler)
    for pipeline in (ExtractPipeline, ValidatePipeline, EscalatePipeline, StorePipeline):
        with pytest.raises(NotConfigured):
            build_from_crawler(pipeline, crawler)


# -- extract -----------------------------------------------------------------------------


def test_extract_fills_the_record_from_json_ld(make: Callable[..., Setup]) -> None:
    setup = make()
    item = asyncio.run(setup.build(ExtractPipeline).process_item(setup.item(body=PRODUCT_PAGE)))
    assert item.status == "completed" and item.error is None
    assert item.data == {"name": "Laptop 15", "price": 1299.0}
    assert item.evidence == {"name": "jsonld", "price": "jsonld"}
    assert item.extraction == {"method": "structured"}
    assert (item.llm_calls, setup.stat("batch/extract/fields/jsonld")) == (0, 2)


def test_extract_without_structured_data_or_llm_fails(make: Callable[..., Setup]) -> None:
    setup = make()
    page = "<html><body><p>Nothing machine-readable here.</p></body></html>"
    item = asyncio.run(setup.build(ExtractPipeline).process_item(setup.item(body=page)))
    assert item.status == "failed"
    assert (item.error["code"], item.error["retryable"]) == ("EXTRACTION_FAILED", False)
    assert item.data is None
    assert setup.stat("batch/extract/empty") == 1


def test_extract_leaves_failed_items_alone(make: Callable[..., Setup]) -> None:
    setup = make()
    error = {"code": "TIMEOUT", "message": "took too long", "retryable": True}
    item = setup.item(body=PRODUCT_PAGE, status="failed", error=error)
    assert asyncio.run(setup.build(ExtractPipeline).process_item(item)) is item
    assert (item.data, item.error) == (None, error)


# -- validate ----------------------------------------------------------------------------


def test_validate_coerces_and_validates(make: Callable[..., Setup]) -> None:
    setup = make()
    item = setup.item(data={"name": "Laptop 15", "price": "1,299.00"})
    item = asyncio.run(setup.build(ValidatePipeline).process_item(item))
    assert item.data == {"name": "Laptop 15", "price": 1299.0}
    assert item.validation == {"valid": True, "errors": []}
    assert (item.status, item.error) == ("completed", None)


def test_invalid_record_fails_and_keeps_its_data(make: Callable[..., Setup]) -> None:
    setup = make()
    item = setup.item(data={"name": "Laptop 15", "price": "ask us"})
    item = asyncio.run(setup.build(ValidatePipeline).process_item(item))
    assert item.status == "failed"
    assert (item.error["code"], item.error["retryable"]) == ("VALIDATION_FAILED", False)
    assert item.data == {"name": "Laptop 15", "price": "ask us"}
    assert item.validation is not None and item.validation["valid"] is False
    assert [error["path"] for error in item.validation["errors"]] == ["price"]


def test_all_empty_record_fails_as_empty_extraction(make: Callable[..., Setup]) -> None:
    setup = make()
    item = asyncio.run(setup.build(ValidatePipeline).process_item(setup.item(data={"name": ""})))
    assert (item.status, item.error["code"]) == ("failed", "EMPTY_EXTRACTION")


# -- escalate ----------------------------------------------------------------------------


def test_escalate_passes_items_the_spider_keeps(make: Callable[..., Setup]) -> None:
    setup = make()
    item = setup.item(data={"name": "Laptop 15", "price": 1299.0})
    assert asyncio.run(setup.build(EscalatePipeline).process_item(item)) is item
    assert setup.recorded.escalated == [0]
    assert setup.stat("batch/render/escalated/extraction") is None


def test_escalate_drops_the_item_and_crawls_the_browser_request(
    make: Callable[..., Setup],
) -> None:
    setup = make()
    request = scrapy.Request(URLS[1], meta={"playwright": True})
    setup.recorded.escalate = request
    crawled: list[scrapy.Request] = []
    # the engine's one use here: take the request back (a crawl is not running)
    setup.crawler.engine = SimpleNamespace(crawl=crawled.append)  # type: ignore[assignment]
    item = setup.item(1, render_mode="fetch", status="failed",
                      error={"code": "EXTRACTION_FAILED", "message": "-", "retryable": False})
    with pytest.raises(DropItem):
        asyncio.run(setup.build(EscalatePipeline).process_item(item))
    assert crawled == [request]
    assert setup.stat("batch/render/escalated/extraction") == 1


# -- store -------------------------------------------------------------------------------


def test_store_writes_the_record_and_moves_the_counters(make: Callable[..., Setup]) -> None:
    setup = make()
    pipeline = setup.build(StorePipeline)
    item = setup.item(data={"name": "Laptop 15", "price": 1299.0}, http_status=200,
                      evidence={"name": "jsonld", "price": "jsonld"}, body=PRODUCT_PAGE,
                      validation={"valid": True, "errors": []})
    assert asyncio.run(pipeline.process_item(item)) is item
    doc = setup.stored(0)
    assert doc["status"] == "completed"
    assert (doc["data"], doc["evidence"]) == (item.data, item.evidence)
    assert "body" not in doc and "lease" not in doc
    batch = assert_counters_match_items(setup.store, setup.run.batch_id)
    counters = batch["counters"]
    assert (counters["completed"], counters["leased"], counters["failed"]) == (1, 2, 0)
    assert 0 not in setup.run.inflight
    assert setup.stat("batch/items/completed") == 1

    with pytest.raises(DropItem):  # the same item again: already finished
        asyncio.run(pipeline.process_item(setup.item(data={"name": "other", "price": 1.0})))
    assert setup.stat("batch/store/stale") == 1
    assert setup.stored(0)["data"] == {"name": "Laptop 15", "price": 1299.0}
    assert setup.store.get_batch(setup.run.batch_id)["counters"] == counters


def test_store_counts_failures_by_code_and_stops_on_fail_fast(
    make: Callable[..., Setup],
) -> None:
    setup = make(fail_fast=True)
    item = setup.item(2, data={"name": "Laptop 15", "price": "ask us"})
    item.fail({"code": "VALIDATION_FAILED", "message": "price: not a number",
               "retryable": False})
    asyncio.run(setup.build(StorePipeline).process_item(item))
    doc = setup.stored(2)
    assert (doc["status"], doc["error"]["code"]) == ("failed", "VALIDATION_FAILED")
    assert doc["data"] == {"name": "Laptop 15", "price": "ask us"}
    batch = assert_counters_match_items(setup.store, setup.run.batch_id)
    assert batch["counters"]["failed"] == 1
    assert batch["failures"] == {"VALIDATION_FAILED": 1}
    assert setup.stat("batch/errors/VALIDATION_FAILED") == 1
    assert setup.recorded.stops == ["fail_fast"]
