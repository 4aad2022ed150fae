"""LLM faults end to end: each ends in the right item status and code, with counters intact.

The fake server is told what to do wrong (429 + Retry-After, 500, hang,
invalid JSON, non-conforming JSON, no ``json_schema`` support); the real
spider runs against it. Pages are /plain/<n> (OpenGraph name only), so the
LLM is asked for sku, price and in_stock.
"""

from __future__ import annotations

import pytest

from batchscraper.demo.site import ExampleSite, product_expected
from batchscraper.store import BatchStore
from tests.fakellm import (  # noqa: F401  (fixtures)
    NONCONFORMING,
    FakeLLM,
    fake_llm_fixture,
    fake_llm_server_fixture,
)
from tests.test_llm_extract import PRODUCT_SCHEMA, check_counters, run

ONE_CHUNK = {"BATCH_LLM_CHUNK_TOKENS": 20_000}


def one_item(crawl, site: ExampleSite, store: BatchStore, fake: FakeLLM, n: int,
             **settings) -> dict:
    batch_id, _ = run(crawl, fake, [site.url(f"/plain/{n}")], PRODUCT_SCHEMA,
                      {**ONE_CHUNK, **settings}, retries=0)
    check_counters(store, batch_id)
    (item,) = store.iter_items(batch_id)
    # every attempt the server may have worked on counts as a call (answered, 500, timed out)
    assert item["llm_calls"] == fake.answered + fake.spent
    assert item["tokens"] == {"in": fake.tokens_in, "out": fake.tokens_out}
    return item


def assert_product(item: dict, n: int) -> None:
    assert item["status"] == "completed", item.get("error")
    assert item["data"]["price"] == pytest.approx(product_expected(n)["price"])
    assert item["data"]["sku"] == product_expected(n)["sku"]


@pytest.mark.slow
def test_429_retry_after_is_honoured_then_succeeds(crawl, site, store, fake_llm: FakeLLM):
    fake_llm.fail_next("429", times=2, retry_after="1")
    item = one_item(crawl, site, store, fake_llm, 51)
    assert_product(item, 51)
    assert fake_llm.calls == 3 and item["llm_calls"] == 1


@pytest.mark.slow
def test_429_until_retries_run_out(crawl, site, store, fake_llm: FakeLLM):
    fake_llm.fail_next("429", times=10, retry_after="0")
    item = one_item(crawl, site, store, fake_llm, 52, BATCH_LLM_RETRIES=2)
    assert item["status"] == "failed"
    assert item["error"]["code"] == "LLM_RATE_LIMITED" and item["error"]["retryable"] is True
    assert fake_llm.calls == 3 and item["llm_calls"] == 0
    assert item["data"] == {"name": "Plain 52"}  # the structured part is kept


@pytest.mark.slow
def test_500_until_retries_run_out(crawl, site, store, fake_llm: FakeLLM):
    fake_llm.fail_next("500", times=10)
    item = one_item(crawl, site, store, fake_llm, 53, BATCH_LLM_RETRIES=1)
    assert item["status"] == "failed"
    assert item["error"]["code"] == "LLM_ERROR" and item["error"]["retryable"] is True
    assert fake_llm.calls == 2


@pytest.mark.slow
def test_hanging_endpoint_times_out(crawl, site, store, fake_llm: FakeLLM):
    fake_llm.fail_next("hang", times=10)
    item = one_item(crawl, site, store, fake_llm, 54, BATCH_LLM_RETRIES=1, BATCH_LLM_TIMEOUT=1)
    assert item["status"] == "failed"
    assert item["error"]["code"] == "LLM_TIMEOUT"
    assert fake_llm.calls == 2 and item["llm_calls"] == 2
    assert item["llm_ms"] >= 1000 * (1 + 2)  # the retry after a timeout waits twice as long
    assert item["duration_ms"] >= item["llm_ms"]


@pytest.mark.slow
def test_invalid_json_is_repaired_once(crawl, site, store, fake_llm: FakeLLM):
    fake_llm.fail_next("invalid_json")
    item = one_item(crawl, site, store, fake_llm, 55)
    assert_product(item, 55)
    assert item["llm_calls"] == 2 and item["extraction"]["repaired"] is True
    repair = fake_llm.requests[1]["messages"]
    assert repair[-2]["role"] == "assistant" and "could not be parsed" in repair[-1]["content"]


@pytest.mark.slow
def test_invalid_json_twice_is_bad_output(crawl, site, store, fake_llm: FakeLLM):
    fake_llm.fail_next("invalid_json", times=2)
    item = one_item(crawl, site, store, fake_llm, 56)
    assert item["status"] == "failed" and item["error"]["code"] == "LLM_BAD_OUTPUT"
    assert item["llm_calls"] == 2


@pytest.mark.slow
def test_nonconforming_json_gets_one_repair_prompt(crawl, site, store, fake_llm: FakeLLM):
    fake_llm.fail_next("nonconforming")
    item = one_item(crawl, site, store, fake_llm, 57)
    assert_product(item, 57)
    assert item["llm_calls"] == 2 and item["extraction"]["repaired"] is True
    repair = fake_llm.requests[1]["messages"]
    assert "does not match the answer schema" in repair[-1]["content"]
    assert "price" in repair[-1]["content"]
    assert site.hits("/plain/57") == 1  # no second fetch


@pytest.mark.slow
def test_nonconforming_twice_fails_validation_with_data_kept(crawl, site, store,
                                                             fake_llm: FakeLLM):
    fake_llm.fail_next("nonconforming", times=2)
    item = one_item(crawl, site, store, fake_llm, 58)
    assert item["status"] == "failed" and item["error"]["code"] == "VALIDATION_FAILED"
    assert item["llm_calls"] == 2
    # what the model said is kept, except a number that is not on the page (grounding: auto)
    assert item["data"]["sku"] == NONCONFORMING["sku"]
    assert "price" not in item["data"] and "price" in item["extraction"]["nulled"]
    assert item["validation"]["valid"] is False
    errors = item["validation"]["errors"]
    assert {e["path"] for e in errors} >= {"sku", "in_stock"}
    assert any("'price' is a required property" in e["message"] for e in errors)


@pytest.mark.slow
def test_server_without_json_schema_support_falls_back(crawl, site, store, fake_llm: FakeLLM):
    fake_llm.reject_json_schema = True
    urls = [site.url("/plain/61"), site.url("/plain/64")]
    settings = {**ONE_CHUNK, "BATCH_LLM_CONCURRENCY": 1}  # one request at a time: a fixed order
    batch_id, result = run(crawl, fake_llm, urls, PRODUCT_SCHEMA, settings)
    check_counters(store, batch_id)
    for item, n in zip(store.iter_items(batch_id), (61, 64), strict=True):
        assert_product(item, n)
    formats = [(r.get("response_format") or {}).get("type") for r in fake_llm.requests]
    assert formats == ["json_schema", "json_object", "json_object"]
    assert "Answer schema (JSON Schema)" in fake_llm.requests[1]["messages"][1]["content"]
    assert "'batch/llm/fallback/json_object': 1" in result.stderr


@pytest.mark.slow
def test_call_budget_stops_llm_extraction(crawl, site, store, fake_llm: FakeLLM):
    urls = [site.url("/products/62")] + [site.url(f"/plain/{n}") for n in (65, 68, 71, 72)]
    batch_id, result = run(crawl, fake_llm, urls, PRODUCT_SCHEMA, ONE_CHUNK, max_llm_calls=2)
    batch = check_counters(store, batch_id)
    items = list(store.iter_items(batch_id))
    assert items[0]["status"] == "completed" and items[0]["llm_calls"] == 0  # JSON-LD
    codes = sorted((item.get("error") or {}).get("code") or "ok" for item in items[1:])
    assert codes == ["BUDGET_EXCEEDED", "BUDGET_EXCEEDED", "ok", "ok"]
    assert fake_llm.calls == 2 and batch["counters"]["llm_calls"] == 2
    assert batch["error"]["code"] == "BUDGET_EXCEEDED"
    assert batch["status"] == "partial"
    assert "'batch/llm/budget_exceeded': 2" in result.stderr


@pytest.mark.slow
def test_cost_budget_stops_llm_extraction(crawl, site, store, fake_llm: FakeLLM):
    urls = [site.url(f"/plain/{n}") for n in (75, 78, 79)]
    # one call costs about $0.004 with the fake model's $1/$2 per million tokens
    settings = {**ONE_CHUNK, "BATCH_LLM_CONCURRENCY": 1}  # the cost is known before the next call
    batch_id, _ = run(crawl, fake_llm, urls, PRODUCT_SCHEMA, settings, max_cost_usd=0.001)
    batch = check_counters(store, batch_id)
    statuses = sorted(item["status"] for item in store.iter_items(batch_id))
    assert statuses == ["completed", "failed", "failed"]
    assert fake_llm.calls == 1
    assert batch["counters"]["cost_usd"] > 0.001
