"""What real models do, and what the LLM path does about it (issue: a real local LLM).

Each test pins one behaviour found when the spider first met a real small model:
answers cut off at the token cap, unusable answers cached, failed attempts not
counted, a structured record lost when the LLM failed, a paid answer thrown away
when the budget refused its repair, a required-but-nullable null dropped,
``maxItems`` lost on the way to the model, requests queued at a one-slot server
timing out. The end-to-end ones run the real spider against the fake server's
faults; the throttle and the timeout stretch are checked in-process.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from batchscraper.exceptions import LLMTimeoutError
from batchscraper.llm.client import ChatRequest, ChatResult
from batchscraper.llm.config import LLMConfig
from batchscraper.llm.extractor import LLMExtractor, PageTask, Usage
from batchscraper.llm.grounding import PageIndex, must_be_copied, strip_invented
from batchscraper.llm.merge import shape_to_schema
from batchscraper.llm.prompts import output_budget, strict_schema
from batchscraper.llm.throttle import LLMThrottle, Slot
from batchscraper.store import BatchStore
from tests.fakellm import FakeLLM, fake_llm_fixture, fake_llm_server_fixture  # noqa: F401
from tests.test_llm_extract import PRODUCT_SCHEMA, check_counters, run

ONE_CHUNK = {"BATCH_LLM_CHUNK_TOKENS": 20_000}
PARTIAL_JSONLD = """<html><head><title>Lamp</title>
<script type="application/ld+json">{"@context": "https://schema.org", "@type": "Product",
"name": "Desk lamp", "sku": "LMP-1"}</script></head>
<body><h1>Desk lamp</h1><p>SKU: LMP-1</p><p>A lamp for desks.</p></body></html>"""


def items(store: BatchStore, batch_id: str) -> list[dict]:
    check_counters(store, batch_id)
    return list(store.iter_items(batch_id))


# -- end to end, against the fake server's faults ----------------------------------------


@pytest.mark.slow
def test_an_answer_cut_off_at_the_cap_is_asked_again_with_a_larger_cap(crawl, site, store,
                                                                      fake_llm: FakeLLM):
    fake_llm.fail_next("truncated")
    batch_id, _ = run(crawl, fake_llm, [site.url("/plain/71")], PRODUCT_SCHEMA, ONE_CHUNK,
                      retries=0)
    (item,) = items(store, batch_id)
    assert item["status"] == "completed", item.get("error")
    first, second = fake_llm.requests
    assert second["max_tokens"] == 4 * first["max_tokens"]
    assert first["max_tokens"] < 4096  # sized by the schema, not the global cap
    assert item["llm_calls"] == 2


@pytest.mark.slow
def test_an_answer_cut_off_every_time_says_so(crawl, site, store, fake_llm: FakeLLM):
    fake_llm.fail_next("truncated", times=10)
    batch_id, _ = run(crawl, fake_llm, [site.url("/plain/72")], PRODUCT_SCHEMA,
                      {**ONE_CHUNK, "BATCH_LLM_MAX_OUTPUT_TOKENS": 600}, retries=0)
    (item,) = items(store, batch_id)
    assert item["error"]["code"] == "LLM_OUTPUT_TRUNCATED"
    assert "600 tokens" in item["error"]["message"]
    assert [r["max_tokens"] for r in fake_llm.requests] == [256, 600]


@pytest.mark.slow
def test_unusable_answers_are_not_cached(crawl, site, store, fake_llm: FakeLLM):
    prompt = f"Extract the product. Run {uuid.uuid4().hex}"
    settings = {**ONE_CHUNK, "BATCH_LLM_CACHE_ENABLED": True}
    fake_llm.fail_next("invalid_json", times=2)
    first, _ = run(crawl, fake_llm, [site.url("/plain/73")], PRODUCT_SCHEMA, settings,
                   prompt=prompt, retries=0)
    assert items(store, first)[0]["error"]["code"] == "LLM_BAD_OUTPUT"
    calls = fake_llm.calls
    second, _ = run(crawl, fake_llm, [site.url("/plain/73")], PRODUCT_SCHEMA, settings,
                    prompt=prompt, retries=0)
    (item,) = items(store, second)
    assert item["status"] == "completed" and item["llm_calls"] >= 1
    assert fake_llm.calls > calls  # asked again, not replayed from the cache


@pytest.mark.slow
def test_a_repaired_answer_makes_a_rerun_free(crawl, site, store, fake_llm: FakeLLM):
    prompt = f"Extract the product. Run {uuid.uuid4().hex}"
    settings = {**ONE_CHUNK, "BATCH_LLM_CACHE_ENABLED": True}
    fake_llm.fail_next("invalid_json")
    first, _ = run(crawl, fake_llm, [site.url("/plain/77")], PRODUCT_SCHEMA, settings,
                   prompt=prompt, retries=0)
    assert items(store, first)[0]["extraction"]["repaired"] is True
    calls = fake_llm.calls
    second, _ = run(crawl, fake_llm, [site.url("/plain/77")], PRODUCT_SCHEMA, settings,
                    prompt=prompt, retries=0)
    (item,) = items(store, second)
    assert item["status"] == "completed" and item["llm_calls"] == 0
    assert fake_llm.calls == calls


@pytest.mark.slow
def test_the_structured_record_survives_an_llm_failure(crawl, store, fake_llm: FakeLLM):
    fake_llm.pages["lamp"] = PARTIAL_JSONLD
    optional = {k: v for k, v in PRODUCT_SCHEMA.items() if k != "required"}
    fake_llm.fail_next("500", times=10)
    done, _ = run(crawl, fake_llm, [fake_llm.page_url("lamp")], optional,
                  {**ONE_CHUNK, "BATCH_LLM_RETRIES": 0}, retries=0)
    (item,) = items(store, done)
    assert item["status"] == "completed"  # valid without the fields the LLM was asked for
    assert item["data"] == {"name": "Desk lamp", "sku": "LMP-1"}
    assert item["extraction"]["llm_error"]["code"] == "LLM_ERROR"
    fake_llm.fail_next("500", times=10)
    failed, _ = run(crawl, fake_llm, [fake_llm.page_url("lamp")], PRODUCT_SCHEMA,
                    {**ONE_CHUNK, "BATCH_LLM_RETRIES": 0}, retries=0)
    (item,) = items(store, failed)
    assert item["status"] == "failed" and item["error"]["code"] == "LLM_ERROR"
    assert item["data"] == {"name": "Desk lamp", "sku": "LMP-1"}  # what was found stays


@pytest.mark.slow
def test_a_repair_refused_by_the_budget_keeps_the_first_answer(crawl, site, store,
                                                              fake_llm: FakeLLM):
    fake_llm.fail_next("nonconforming")
    batch_id, _ = run(crawl, fake_llm, [site.url("/plain/74")], PRODUCT_SCHEMA,
                      {**ONE_CHUNK, "BATCH_LLM_RETRIES": 0}, retries=0, max_llm_calls=1)
    (item,) = items(store, batch_id)
    assert fake_llm.calls == 1
    assert item["data"]["in_stock"] == "perhaps"  # from the paid answer
    assert item["extraction"]["repair_skipped"] == "budget"
    assert store.get_batch(batch_id)["error"]["code"] == "BUDGET_EXCEEDED"


@pytest.mark.slow
def test_a_null_for_a_required_nullable_field_is_kept(crawl, site, store, fake_llm: FakeLLM):
    schema = {"type": "object", "properties": {
        "name": {"type": "string"}, "warranty": {"type": ["string", "null"]}},
        "required": ["name", "warranty"]}
    batch_id, _ = run(crawl, fake_llm, [site.url("/plain/75")], schema, ONE_CHUNK, retries=0)
    (item,) = items(store, batch_id)
    assert item["status"] == "completed", item.get("error")
    assert "warranty" in item["data"] and item["data"]["warranty"] is None  # not on the page
    assert fake_llm.calls == 1  # no repair prompt was needed


@pytest.mark.slow
def test_max_items_reaches_the_model(crawl, store, fake_llm: FakeLLM):
    fake_llm.pages["tags"] = "<html><body><h1>Tagged</h1>" + "".join(
        f"<p>SKU: T-{n}</p>" for n in range(6)) + "</body></html>"
    schema = {"type": "object", "properties": {
        "name": {"type": "string"},
        "sku": {"type": "array", "items": {"type": "string"}, "maxItems": 2}},
        "required": ["name"]}
    run(crawl, fake_llm, [fake_llm.page_url("tags")], schema, ONE_CHUNK, retries=0)
    sent = fake_llm.requests[0]["response_format"]["json_schema"]["schema"]
    assert sent["properties"]["sku"]["maxItems"] == 2
    assert fake_llm.requests[0]["max_tokens"] < 4096


# -- in process -------------------------------------------------------------------------


def test_strict_schema_keeps_max_items_and_states_max_length():
    schema = {"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 5}}}
    strict = strict_schema(schema)
    assert strict is not None
    tags = strict["properties"]["tags"]
    assert tags["maxItems"] == 5
    assert "maxLength" not in tags["items"] and "20 characters" in tags["items"]["description"]


def test_values_are_cut_to_the_schema_with_the_paths_reported():
    schema = {"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 2},
        "title": {"type": "string", "maxLength": 5}}}
    trimmed: list[str] = []
    shaped = shape_to_schema({"tags": ["abcdef", "b", "c"], "title": "long title"}, schema,
                             trimmed)
    assert shaped == {"tags": ["abcd", "b"], "title": "long "}
    assert sorted(trimmed) == ["tags", "tags[]", "title"]


def test_output_budget_follows_the_schema():
    small = {"type": "object", "properties": {"price": {"type": "number"}}}
    body = {"type": "object", "properties": {"body": {"type": "string"}}}
    capped = {"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3}}}
    assert output_budget(small, 4096) == 256  # the floor
    assert output_budget(body, 4096) > 2048  # a whole text
    assert output_budget(body, 1000) == 1000  # never above the cap
    assert output_budget(capped, 4096) < output_budget(
        {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}},
        4096)


def test_grounding_auto_nulls_invented_identifiers_and_numbers_only():
    page = PageIndex.of("Call us: 030 1234 567. Price 19.99 EUR. A fine lamp for your desk.")
    schema = {"type": "object", "properties": {
        "phone": {"type": "string"}, "isbn": {"type": "string"}, "price": {"type": "number"},
        "summary": {"type": "string"},
        "offer": {"type": "object", "properties": {"price": {"type": "number"}}},
        "isbns": {"type": "array", "items": {"type": "string"}},
        "total_minutes": {"type": "integer"}, "currency_code": {"type": "string"}}}
    props = schema["properties"]
    assert must_be_copied("phone", props["phone"]) and must_be_copied("isbn", props["isbn"])
    assert must_be_copied("contactPhone", {"type": "string"})
    assert must_be_copied("released", {"type": "string", "format": "date"})
    assert not must_be_copied("summary", props["summary"])
    assert not must_be_copied("in_stock", {"type": "boolean"})
    assert strip_invented("phone", "123-456-7890", props["phone"], page) is None
    assert strip_invented("phone", "030 1234 567", props["phone"], page) == "030 1234 567"
    assert strip_invented("isbn", "978-3-16-148410-0", props["isbn"], page) is None
    assert strip_invented("price", 999999, props["price"], page) is None
    assert strip_invented("price", 19.99, props["price"], page) == 19.99
    assert strip_invented("summary", "A nice lamp", props["summary"], page) == "A nice lamp"
    assert strip_invented("offer", {"price": 5}, props["offer"], page) == {"price": None}
    assert strip_invented("isbns", ["X1", "X2"], props["isbns"], page) == []
    # converted (90 from "1 hr 30 min") or derived ("EUR" from "€") values are not copies
    assert strip_invented("total_minutes", 90, props["total_minutes"], page) == 90
    assert strip_invented("currency_code", "USD", props["currency_code"], page) == "USD"
    assert not must_be_copied("country", {"anyOf": [{"enum": ["DE"]}, {"type": "null"}]})


def test_throttle_halves_on_congestion_and_grows_on_fast_answers():
    async def scenario() -> None:
        throttle = LLMThrottle(start=4, maximum=6)
        async with throttle.slot() as a, throttle.slot() as b:
            assert (a.ahead, b.ahead) == (0, 1)
        assert throttle.congested(a) and throttle.limit == 2
        assert not throttle.congested(b)  # sent before the cut: the same round
        async with throttle.slot() as c:
            pass
        assert throttle.congested(c) and throttle.limit == 1  # sent after it: a new round
        async with throttle.slot() as d:
            pass
        assert throttle.congested(d) and throttle.limit == 1  # never below one
        now = time.monotonic()
        for _ in range(20):
            throttle.answered(Slot(ahead=0, started=now - 1.0))
        assert 1 < throttle.limit <= 6
        limit = throttle.limit
        throttle.answered(Slot(ahead=0, started=time.monotonic() - 10.0))  # slow: no growth
        assert throttle.limit == limit

    asyncio.run(scenario())


def test_throttle_reports_requests_in_flight_and_waiting():
    seen: list[tuple[int, int]] = []

    async def scenario() -> None:
        throttle = LLMThrottle(start=1, maximum=1, on_change=lambda *now: seen.append(now))

        async def one() -> None:
            async with throttle.slot():
                await asyncio.sleep(0.01)

        await asyncio.gather(one(), one())

    asyncio.run(scenario())
    assert max(waiting for _, waiting in seen) == 1  # the second waited for the first
    assert max(in_flight for in_flight, _ in seen) == 1  # never two at once
    assert seen[-1] == (0, 0)


class _OneAtATime:
    """A chat client like a one-slot server: answers in order, one second each."""

    def __init__(self, config: LLMConfig) -> None:
        self.timeouts: list[float] = []
        self.lock = asyncio.Lock()

    async def complete(self, request: ChatRequest) -> ChatResult:
        assert request.timeout is not None
        self.timeouts.append(request.timeout)
        try:
            async with asyncio.timeout(request.timeout):
                async with self.lock:
                    await asyncio.sleep(0.2)
        except TimeoutError:
            raise LLMTimeoutError("slow", spent=True) from None
        return ChatResult(text=json.dumps({"name": "x"}), tokens_in=1, tokens_out=1,
                          mode="json_schema")


def test_requests_queued_at_a_one_slot_server_do_not_time_out():
    """Four requests at once, each answer 0.2 s, the timeout 0.3 s: the fourth waits 0.8 s."""
    config = LLMConfig(base_url="http://127.0.0.1:1/v1", api_key="", model="m", timeout=0.3,
                       concurrency=4, retries=0)
    client = _OneAtATime(config)
    extractor = LLMExtractor(config, client, None, None)
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}

    async def extract_all() -> list[object]:
        tasks = [PageTask(batch_id="b", url=f"http://x/{n}", markdown=f"page {n}",
                          schema=schema) for n in range(4)]
        return await asyncio.gather(*(extractor.extract(t, lambda v: [], Usage())
                                      for t in tasks), return_exceptions=True)

    results = asyncio.run(extract_all())
    assert results == [{"name": "x"}] * 4
    assert sorted(client.timeouts) == pytest.approx([0.3, 0.6, 0.9, 1.2])


@pytest.mark.slow
def test_a_guessed_record_is_completed_and_a_marked_up_one_trusted(crawl, site, store,
                                                                  fake_llm: FakeLLM):
    """Optional fields: asked for on a page without markup, not on a JSON-LD page."""
    fake_llm.pages["plain-lamp"] = ("<html><head><title>Desk lamp</title></head><body>"
                                    "<h1>Desk lamp</h1><p>Price: $19.99</p></body></html>")
    schema = {"type": "object", "properties": {
        "name": {"type": "string"}, "price": {"type": "number"}, "colour": {"type": "string"}},
        "required": ["name", "price"]}
    heuristics = {**ONE_CHUNK, "BATCH_HEURISTICS_ENABLED": True}
    guessed, _ = run(crawl, fake_llm, [fake_llm.page_url("plain-lamp")], schema, heuristics,
                     retries=0)
    (item,) = items(store, guessed)
    assert item["status"] == "completed", item.get("error")
    assert item["data"]["name"] == "Desk lamp" and item["data"]["price"] == 19.99
    asked = fake_llm.requests[0]["response_format"]["json_schema"]["schema"]["properties"]
    assert set(asked) == {"colour"} and item["llm_calls"] == 1
    calls = fake_llm.calls
    marked_up, _ = run(crawl, fake_llm, [site.url("/products/76")], schema, heuristics,
                       retries=0)
    (item,) = items(store, marked_up)
    assert item["status"] == "completed" and item["evidence"]["name"] == "jsonld"
    assert fake_llm.calls == calls and item["llm_calls"] == 0


def test_the_item_deadline_starts_when_the_item_gets_a_slot():
    """One slot, four items, answers of 0.2 s: the last waits 0.6 s, longer than its deadline."""
    config = LLMConfig(base_url="http://127.0.0.1:1/v1", api_key="", model="m", timeout=0.3,
                       concurrency=1, max_concurrency=1, retries=0, item_deadline=0.5)
    extractor = LLMExtractor(config, _OneAtATime(config), None, None)
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    usages = [Usage() for _ in range(4)]

    async def extract_all() -> list[object]:
        tasks = [PageTask(batch_id="b", url=f"http://x/{n}", markdown=f"page {n}",
                          schema=schema) for n in range(4)]
        return await asyncio.gather(*(extractor.extract(t, lambda v: [], u)
                                      for t, u in zip(tasks, usages, strict=True)),
                                    return_exceptions=True)

    assert asyncio.run(extract_all()) == [{"name": "x"}] * 4
    assert max(u.seconds for u in usages) >= 0.6  # llm time includes the wait for the slot
