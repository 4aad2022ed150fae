"""Tests for RecordChecker.with_unstated_nulls: a required but nullable field the page does not
state is null, so a record that has everything else validates."""

from __future__ import annotations

import json
from typing import Any

import pytest

from batchscraper.extraction.validation import RecordChecker
from batchscraper.store import BatchStore
from tests.conftest import assert_counters_match_items, batch_id_from
from tests.fakellm import FakeLLM, fake_llm_fixture, fake_llm_server_fixture  # noqa: F401

NULLABLE = {"type": ["string", "null"]}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "availability": {"type": ["string", "null"], "enum": ["InStock", "OutOfStock", None]},
        "colour": {"type": ["string", "null"], "enum": ["red", "blue"]},
        "offer": {"type": "object", "properties": {
            "price": {"type": ["number", "null"]}, "in_stock": {"type": ["boolean", "null"]}},
            "required": ["price", "in_stock"]},
        "steps": {"type": "array", "items": {"type": "object", "properties": {
            "text": {"type": "string"}, "note": NULLABLE}, "required": ["text", "note"]}},
    },
    "required": ["name", "availability", "colour", "offer", "steps"],
}


def test_required_nullable_fields_the_record_lacks_become_null() -> None:
    checker = RecordChecker(SCHEMA)
    record = {"offer": {"price": 5.0}, "steps": [{"text": "Mix."}, {"text": "Bake.",
                                                                      "note": "hot"}]}
    filled = checker.with_unstated_nulls(record)
    assert filled == {"offer": {"price": 5.0, "in_stock": None},
                      "steps": [{"text": "Mix.", "note": None}, {"text": "Bake.", "note": "hot"}],
                      "availability": None}
    assert record == {"offer": {"price": 5.0}, "steps": [{"text": "Mix."}, {"text": "Bake.",
                                                                            "note": "hot"}]}
    # name is not nullable, and colour's enum refuses null: both stay missing (and invalid)
    assert sorted(e["message"] for e in checker.errors(filled)) == [
        "'colour' is a required property", "'name' is a required property"]
    whole = checker.with_unstated_nulls({**record, "name": "Cake", "colour": "red"})
    assert checker.errors(whole) == []


LAMP = """<html><head><title>Lamp</title>
<script type="application/ld+json">{"@context": "https://schema.org", "@type": "Product",
"name": "Desk lamp", "sku": "LMP-1"}</script></head>
<body><h1>Desk lamp</h1><p>SKU: LMP-1</p><p>A lamp for desks.</p></body></html>"""


@pytest.mark.slow
def test_the_structured_record_completes_with_nulls_when_the_llm_fails(
        crawl, store: BatchStore, fake_llm: FakeLLM) -> None:
    """The LLM asked for the warranty fails: the record is complete without it (null), and
    the failure is noted."""
    fake_llm.pages["lamp"] = LAMP
    schema = {"type": "object", "required": ["name", "warranty"], "properties": {
        "name": {"type": "string"}, "sku": {"type": "string"},
        "warranty": {"type": ["string", "null"]}}}
    fake_llm.fail_next("500", times=10)
    result = crawl(urls=fake_llm.page_url("lamp"), schema=json.dumps(schema), render_js="never",
                   retries=0, settings=fake_llm.settings(BATCH_LLM_RETRIES=0))
    batch_id = batch_id_from(result)
    (item,) = store.iter_items(batch_id)
    assert item["status"] == "completed", item.get("error")
    assert item["data"] == {"name": "Desk lamp", "sku": "LMP-1", "warranty": None}
    assert item["extraction"]["llm_error"]["code"] == "LLM_ERROR"
    assert assert_counters_match_items(store, batch_id)["counters"]["completed"] == 1
