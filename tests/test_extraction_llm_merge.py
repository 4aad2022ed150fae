"""What the LLM adds to a record the page filled in part: it completes objects, and the values
read from the page stay (the real spider, the fake OpenAI-compatible server answering as a
small model does: a price from elsewhere on the page, a currency it was not shown)."""

from __future__ import annotations

import json

import pytest

from batchscraper.store import BatchStore
from tests.conftest import assert_counters_match_items, batch_id_from
from tests.fakellm import FakeLLM, fake_llm_fixture, fake_llm_server_fixture  # noqa: F401

CALCULATOR = """<html><head><title>Scientific calculator FX-99 | Shop</title></head><body>
<nav><a href="/">Home</a></nav><main><h1>Scientific calculator FX-99</h1>
<p class="price">&euro;15.00</p><p>Hardly used. Its list price was $25.</p>
<p>Brand: Casio</p></main></body></html>"""
SCHEMA = {"type": "object", "required": ["title", "offer"], "properties": {
    "title": {"type": "string"},
    "brand": {"type": ["string", "null"]},
    "offer": {"type": "object", "required": ["price", "in_stock"], "properties": {
        "price": {"type": ["number", "null"]},
        "currency": {"type": ["string", "null"]},
        "in_stock": {"type": ["boolean", "null"]}}}}}


@pytest.mark.slow
def test_the_llm_completes_an_offer_and_the_pages_values_stay(crawl, store: BatchStore,
                                                              fake_llm: FakeLLM) -> None:
    fake_llm.pages["calculator"] = CALCULATOR
    url = fake_llm.page_url("calculator")
    fake_llm.truths[url] = {"offer": {"price": 25, "currency": "USD", "in_stock": True}}
    result = crawl(urls=url, schema=json.dumps(SCHEMA), render_js="never", retries=0,
                   settings=fake_llm.settings(BATCH_HEURISTICS_ENABLED=True))
    batch_id = batch_id_from(result)
    (item,) = store.iter_items(batch_id)
    assert item["status"] == "completed", item.get("error")
    assert item["extraction"]["llm_fields"] == ["offer"]
    sent = fake_llm.requests[0]["messages"][-1]["content"]
    assert '"offer": {"currency": "EUR", "price": 15.0}' in sent  # shown as known
    # price and currency as the page shows them; the stock state only the LLM gave
    assert item["data"] == {"title": "Scientific calculator FX-99", "brand": "Casio",
                            "offer": {"price": 15.0, "currency": "EUR", "in_stock": True}}
    assert item["evidence"] == {"title": "heading", "brand": "label", "offer": "pattern+llm"}
    assert assert_counters_match_items(store, batch_id)["counters"]["completed"] == 1
