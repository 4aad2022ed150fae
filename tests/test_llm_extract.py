"""LLM extraction end to end: the real spider, the example site, the fake OpenAI-compatible server.

Every test runs ``scrapy crawl batch`` with ``OPENAI_BASE_URL`` pointing at
the fake (``tests/fakellm.py``) and asserts on the records and counters stored
in MongoDB, and on what the fake was sent.
"""

from __future__ import annotations

import json
import uuid

import pytest

from batchscraper.demo.site import ExampleSite, product_expected
from batchscraper.store import BatchStore
from tests.conftest import batch_id_from
from tests.fakellm import FakeLLM, fake_llm_fixture, fake_llm_server_fixture  # noqa: F401

PRODUCT_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "sku": {"type": "string"},
        "price": {"type": "number"},
        "in_stock": {"type": "boolean"},
    },
    "required": ["name", "price"],
}
LIST_SCHEMA = {
    "title": "Product",
    "type": "object",
    "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
    "required": ["name", "price"],
}


def run(crawl, fake: FakeLLM, urls: list[str], schema: dict, settings: dict | None = None,
        **args):
    """A crawl against the fake; ``render_js=never`` keeps browser escalation out of the counts."""
    args.setdefault("render_js", "never")
    result = crawl(urls=",".join(urls), schema=json.dumps(schema),
                   settings=fake.settings(**(settings or {})), **args)
    assert result.returncode == 0, result.stderr[-3000:]
    return batch_id_from(result), result


def check_counters(store: BatchStore, batch_id: str) -> dict:
    """Status counters equal the aggregate; usage counters equal the items' sums."""
    batch = store.get_batch(batch_id)
    aggregate = store.aggregate_counters(batch_id)
    for status in ("pending", "leased", "running", "completed", "failed", "cancelled", "total"):
        assert batch["counters"][status] == aggregate[status], (status, batch["counters"])
    items = list(store.iter_items(batch_id))
    assert batch["counters"]["llm_calls"] == sum(i.get("llm_calls") or 0 for i in items)
    assert batch["counters"]["tokens_in"] == sum((i.get("tokens") or {}).get("in", 0)
                                                 for i in items)
    assert batch["counters"]["tokens_out"] == sum((i.get("tokens") or {}).get("out", 0)
                                                  for i in items)
    assert batch["counters"]["cost_usd"] == pytest.approx(sum(i.get("cost_usd") or 0
                                                              for i in items))
    return batch


@pytest.mark.slow
def test_structured_data_first_llm_fills_the_rest(crawl, site: ExampleSite, store: BatchStore,
                                                  fake_llm: FakeLLM):
    urls = [site.url("/products/21"), site.url("/plain/22"), site.url("/plain/23")]
    batch_id, _ = run(crawl, fake_llm, urls, PRODUCT_SCHEMA)
    batch = check_counters(store, batch_id)
    jsonld, plain, plain2 = store.iter_items(batch_id)

    # JSON-LD answers the schema: no LLM call for that page
    assert jsonld["status"] == "completed" and jsonld["llm_calls"] == 0
    assert jsonld["extraction"]["method"] == "structured"
    assert set(jsonld["evidence"].values()) == {"jsonld"}

    # OpenGraph has the name only: the LLM is asked for the rest, the og name is kept
    for item, n in ((plain, 22), (plain2, 23)):
        expected = product_expected(n)
        assert item["status"] == "completed", item.get("error")
        assert item["data"]["name"] == f"Plain {n}"
        assert item["evidence"]["name"] == "og"
        assert item["data"]["price"] == pytest.approx(expected["price"])
        assert item["data"]["sku"] == expected["sku"]
        assert item["data"]["in_stock"] is expected["in_stock"]
        assert item["evidence"]["price"] == "llm"
        assert item["extraction"]["method"] == "structured+llm"
        assert "name" not in item["extraction"]["llm_fields"]
        assert item["extraction"]["grounded"] == {"price": True, "sku": True, "in_stock": True}
        assert item["llm_calls"] == 1
        assert item["tokens"]["in"] > 0 and item["tokens"]["out"] > 0
        # fake-model costs $1 / $2 per million tokens in / out
        cost = (item["tokens"]["in"] * 1.0 + item["tokens"]["out"] * 2.0) / 1e6
        assert item["cost_usd"] == pytest.approx(cost)

    assert fake_llm.calls == 2
    assert batch["counters"]["llm_calls"] == 2
    assert batch["counters"]["tokens_in"] == fake_llm.tokens_in
    assert batch["counters"]["tokens_out"] == fake_llm.tokens_out
    # the request asked for the missing fields only, with a strict json_schema
    request = fake_llm.requests[0]
    fmt = request["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert set(fmt["json_schema"]["schema"]["properties"]) == {"sku", "price", "in_stock"}
    assert request["model"] == "fake-model"


@pytest.mark.slow
def test_cache_makes_a_rerun_free(crawl, site: ExampleSite, store: BatchStore,
                                  fake_llm: FakeLLM):
    prompt = f"Extract the product. Run {uuid.uuid4().hex}"  # fresh cache keys for this test
    urls = [site.url("/plain/31"), site.url("/plain/32")]
    settings = {"BATCH_LLM_CACHE_ENABLED": True}
    first, _ = run(crawl, fake_llm, urls, PRODUCT_SCHEMA, settings, prompt=prompt)
    calls = fake_llm.calls
    assert calls >= 2
    second, result = run(crawl, fake_llm, urls, PRODUCT_SCHEMA, settings, prompt=prompt)
    assert fake_llm.calls == calls  # zero calls on the re-run
    before, after = list(store.iter_items(first)), list(store.iter_items(second))
    assert [i["data"] for i in after] == [i["data"] for i in before]
    assert sum(i["llm_calls"] for i in before) == calls
    assert all(i["llm_calls"] == 0 and i["extraction"]["cache_hits"] >= 1 for i in after)
    assert sum(i["extraction"]["cache_hits"] for i in after) == calls
    assert check_counters(store, second)["counters"]["llm_calls"] == 0
    assert f"'batch/llm/cache_hits': {calls}" in result.stderr
    cached = store.db["llm_cache"].count_documents({"model": "fake-model"})
    assert cached >= 2


@pytest.mark.slow
def test_list_page_records_capped_and_flagged(crawl, site: ExampleSite, store: BatchStore,
                                              fake_llm: FakeLLM):
    urls = [site.url("/list/41?count=6"), site.url("/list/42?count=12")]
    batch_id, _ = run(crawl, fake_llm, urls, LIST_SCHEMA, max_items_per_url=8,
                      max_total_items=10)
    batch = check_counters(store, batch_id)
    small, large = store.iter_items(batch_id)
    # structured data (ItemList JSON-LD) holds every card: no LLM call
    assert fake_llm.calls == 0
    assert small["status"] == "completed"
    kept = len(small["data"])
    assert [r["name"] for r in small["data"]] == [f"Product {n}" for n in range(241, 241 + kept)]
    assert small["extraction"]["records_on_page"] == 6
    assert "more_on_page" not in small["extraction"]
    # 12 cards, 8 per URL: capped and flagged
    assert large["extraction"]["records_on_page"] == 12
    assert large["extraction"]["more_on_page"] is True
    assert large["extraction"]["capped"] is True
    # the batch's 10-record quota cuts whichever page comes second (pages run concurrently)
    assert kept + len(large["data"]) == 10
    over = small["extraction"].get("over_quota", 0) + large["extraction"].get("over_quota", 0)
    assert over == 4
    assert (kept, len(large["data"])) in ((6, 4), (2, 8))
    assert batch["counters"]["records_extracted"] == 10


@pytest.mark.slow
def test_list_page_by_llm(crawl, site: ExampleSite, store: BatchStore, fake_llm: FakeLLM):
    schema = {**LIST_SCHEMA, "properties": {**LIST_SCHEMA["properties"],
                                            "label": {"type": "string"}},
              "required": ["name", "price", "label"]}  # structured data has no label
    batch_id, _ = run(crawl, fake_llm, [site.url("/list/43?count=5")], schema,
                      max_items_per_url=3, options=json.dumps({"grounding": "flag"}))
    (item,) = store.iter_items(batch_id)
    assert fake_llm.calls >= 1
    assert item["status"] == "failed" and item["error"]["code"] == "VALIDATION_FAILED"
    assert item["llm_calls"] == fake_llm.answered
    assert [r["name"] for r in item["data"]] == ["Product 211", "Product 212", "Product 213"]
    assert item["extraction"]["more_on_page"] is True
    check_counters(store, batch_id)
