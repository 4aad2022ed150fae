"""Batches without a schema: prompt-only (a free-form object from the LLM) and content-only
(the page's metadata and kept content); and per-URL extraction options (AlterLab's body).

Inputs are checked in-process; the crawls are the real spider against the example site, with
the fake OpenAI-compatible server where an LLM answers.
"""

from __future__ import annotations

import json

import pytest

from batchscraper.demo.site import ExampleSite, product_expected
from batchscraper.exceptions import BatchInputError
from batchscraper.inputs import Limits, parse_batch
from batchscraper.inputs.profiles import profile_schema
from batchscraper.store import BatchStore
from tests.conftest import assert_counters_match_items, batch_id_from
from tests.fakellm import FakeLLM, fake_llm_fixture, fake_llm_server_fixture  # noqa: F401

NO_LLM = Limits(llm_configured=False)
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
PROMPT = "Extract the product name, price, and availability"


# -- inputs -------------------------------------------------------------------------------


def test_a_prompt_without_a_schema_is_a_prompt_only_batch() -> None:
    spec = parse_batch(["https://a.example/"], None, PROMPT)
    assert (spec.schema, spec.prompt) == (None, PROMPT)


def test_neither_schema_nor_prompt_is_a_content_batch() -> None:
    spec = parse_batch(["https://a.example/"], None, None, {"formats": ["markdown"]})
    assert (spec.schema, spec.prompt, spec.options.formats) == (None, None, ("markdown",))


def test_prompt_only_without_an_llm_is_refused_with_every_problem() -> None:
    with pytest.raises(BatchInputError) as info:
        parse_batch(["https://a.example/", "ftp://b.example/"], None, PROMPT,
                    {"retries": 9}, NO_LLM)
    error = info.value
    assert error.code == "INVALID_URL"  # the first problem's code
    assert [(d["field"], d["code"]) for d in error.details] == [
        ("urls", "INVALID_URL"), ("options", "INVALID_OPTION"), ("prompt", "INVALID_INPUT")]
    assert "a prompt-only batch needs an LLM endpoint" in error.details[2]["message"]

    with pytest.raises(BatchInputError) as alone:
        parse_batch(["https://a.example/"], None, PROMPT, None, NO_LLM)
    assert (alone.value.code, alone.value.http_status) == ("INVALID_INPUT", 422)
    # a schema needs no LLM, and neither does a content batch
    parse_batch(["https://a.example/"], SCHEMA, PROMPT, None, NO_LLM)
    parse_batch(["https://a.example/"], None, None, None, NO_LLM)


def test_url_prompts_without_a_schema_need_an_llm() -> None:
    urls = [{"url": "https://a.example/", "extraction_prompt": "the name"},
            {"url": "https://b.example/", "extraction_prompt": "the name",
             "extraction_profile": "product"}]
    with pytest.raises(BatchInputError) as info:
        parse_batch(urls, None, None, None, NO_LLM)
    assert info.value.http_status == 422
    assert [(d["index"], d["code"]) for d in info.value.details] == [(0, "INVALID_INPUT")]


def test_options_that_need_a_schema() -> None:
    with pytest.raises(BatchInputError) as info:
        parse_batch(["https://a.example/"], None, PROMPT,
                    {"max_items_per_url": 5, "date_filter": {"field": "d", "from": "2024-01-01"}})
    assert info.value.code == "INVALID_OPTION"
    assert [d["option"] for d in info.value.details] == ["max_items_per_url", "date_filter"]


def test_per_url_extraction_options_of_the_alterlab_body() -> None:
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    urls = [
        {"url": "https://a.example/1"},
        {"url": "https://a.example/2", "mode": "js", "timeout": 20, "wait_for": "#main"},
        {"url": "https://a.example/3", "formats": ["text", "markdown"],
         "cost_controls": {"max_tier": "3"}, "cache": True},
        {"url": "https://a.example/4", "extraction_schema": schema,
         "extraction_prompt": "the title", "include_raw_html": True},
        {"url": "https://a.example/5", "extraction_profile": "product"},
        {"url": "https://a.example/6", "extraction_profile": "auto"},
    ]
    spec = parse_batch(urls, None, None)
    assert [u.extraction for u in spec.urls] == [
        None, None,
        {"formats": ["text", "markdown"], "cache": True, "cost_controls": {"max_tier": "3"}},
        {"extraction_schema": schema, "extraction_prompt": "the title",
         "formats": ["json", "html"]},
        {"extraction_schema": profile_schema("product")},
        None,
    ]
    assert spec.urls[1].render_js == "always" and spec.urls[1].timeout == 20
    # stored as given, so a re-run parses it back the same
    assert spec.urls[3].request() == {"extraction_schema": schema,
                                      "extraction_prompt": "the title",
                                      "formats": ["json", "html"]}
    again = parse_batch([{"url": u.url, **u.request()} for u in spec.urls], None, None)
    assert again.urls == spec.urls


def test_bad_per_url_options_are_each_reported_by_index() -> None:
    urls = [
        {"url": "https://a.example/1", "formats": ["pdf"]},
        {"url": "https://a.example/2", "extraction_schema": {"type": "object"}},
        {"url": "https://a.example/3", "extraction_profile": "spaceship"},
        {"url": "https://a.example/4", "cost_controls": {"max_tier": [3]}},
        {"url": "https://a.example/5", "include_raw_html": "yes"},
        {"url": "https://a.example/6", "extraction_schema": SCHEMA, "extraction_profile": "faq"},
        {"url": "https://a.example/7", "advanced": {}},
    ]
    with pytest.raises(BatchInputError) as info:
        parse_batch(urls, SCHEMA)
    assert info.value.code == "INVALID_URL"
    reasons = {d["index"]: d["reason"] for d in info.value.details}
    assert sorted(reasons) == list(range(7))
    assert reasons[0].startswith("formats: unknown ['pdf']")
    assert reasons[1].startswith("extraction_schema: schema names no fields")
    assert reasons[2].startswith("extraction_profile: one of ['auto', ")
    assert "cost_controls" in reasons[3] and "include_raw_html" in reasons[4]
    assert "not both" in reasons[5] and "unknown keys ['advanced']" in reasons[6]


# -- crawls ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_prompt_only_batch_gets_free_form_records(
    crawl, site: ExampleSite, store: BatchStore, fake_llm: FakeLLM
) -> None:
    urls = [site.url("/plain/31"), site.url("/plain/32")]
    result = crawl(urls=",".join(urls), prompt=PROMPT, render_js="never",
                   settings=fake_llm.settings())
    assert result.returncode == 0, result.stderr[-3000:]
    batch_id = batch_id_from(result)
    batch = assert_counters_match_items(store, batch_id)
    assert batch["schema"] is None and batch["status"] == "completed"
    for item, n in zip(store.iter_items(batch_id), (31, 32), strict=True):
        expected = product_expected(n)
        assert item["status"] == "completed", item.get("error")
        assert item["data"] == {"name": f"Plain {n}", "price": pytest.approx(expected["price"]),
                                "availability": expected["in_stock"]}
        assert item["extraction"]["method"] == "llm" and item["extraction"]["schema"] is None
        assert item["evidence"] == dict.fromkeys(item["data"], "llm")
        assert item["llm_calls"] == item["extraction"]["chunks"]  # one call per chunk
    # any JSON object was asked for, with the task and no schema
    assert fake_llm.calls == batch["counters"]["llm_calls"] >= 2
    for request in fake_llm.requests:
        assert request["response_format"] == {"type": "json_object"}
        assert PROMPT in request["messages"][1]["content"]


@pytest.mark.slow
def test_prompt_only_records_are_size_bounded(
    crawl, site: ExampleSite, store: BatchStore, fake_llm: FakeLLM
) -> None:
    result = crawl(urls=site.url("/plain/33"), prompt=PROMPT, render_js="never",
                   settings=fake_llm.settings(BATCH_FREE_FORM_MAX_BYTES=10))
    batch_id = batch_id_from(result)
    (item,) = store.iter_items(batch_id)
    assert item["status"] == "failed" and item["error"]["code"] == "VALIDATION_FAILED"
    assert "BATCH_FREE_FORM_MAX_BYTES" in item["error"]["message"]
    assert_counters_match_items(store, batch_id)


@pytest.mark.slow
def test_prompt_only_without_an_llm_exits_2_and_stores_nothing(
    crawl, store: BatchStore
) -> None:
    before = store.batches.count_documents({})
    result = crawl(urls="https://shop.example/p/1", prompt=PROMPT,
                   settings={"OPENAI_BASE_URL": "", "OPENAI_API_KEY": ""})
    assert result.returncode == 2
    assert "INVALID_INPUT: prompt: a prompt-only batch needs an LLM endpoint" in result.stderr
    assert store.batches.count_documents({}) == before


@pytest.mark.slow
def test_content_batch_and_per_url_options(crawl, site: ExampleSite, store: BatchStore) -> None:
    urls = [
        {"url": site.url("/products/41")},
        {"url": site.url("/products/42"), "formats": ["text"], "include_raw_html": True},
        {"url": site.url("/products/43"), "extraction_profile": "product"},
    ]
    result = crawl(urls=json.dumps(urls), render_js="never")
    assert result.returncode == 0, result.stderr[-3000:]
    batch_id = batch_id_from(result)
    assert_counters_match_items(store, batch_id)
    first, second, third = store.iter_items(batch_id)
    for item in (first, second):
        assert item["status"] == "completed", item.get("error")
        assert item["data"]["title"].startswith("Product 4")
        assert item["extraction"] == {"method": "content", "schema": None}
    assert set(first["content"]) == {"markdown"}  # a content batch keeps the page
    assert set(second["content"]) == {"text", "html"}
    assert third["status"] == "completed" and third["data"]["name"] == "Product 43"
    assert third["content"] is None and third["extraction"]["method"] == "structured"
