"""Retention: ``expires_in`` / ``BATCH_RETENTION_DAYS``, ``content_retention_days`` and
``store_content: false``, on the embedded MongoDB-wire server (the sweep the Scrapyd process
runs, called here directly) and in a real crawl.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from bson import ObjectId
from scrapy.settings import Settings

from batchscraper.exceptions import BatchInputError
from batchscraper.inputs import Limits, parse_batch, parse_more_urls, parse_options
from batchscraper.store import BatchStore, utcnow
from batchscraper.store.ledger import LLMLedger
from batchscraper.store.outbox import OUTBOX
from tests.conftest import assert_counters_match_items, batch_id_from
from tests.fakellm import FakeLLM, fake_llm_fixture, fake_llm_server_fixture  # noqa: F401

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
URLS = ["https://a.example/1", "https://a.example/2"]


@pytest.mark.parametrize(("given", "seconds"), [
    (3600, 3600), ("3600", 3600), ("7d", 7 * 86_400), ("12h", 43_200), ("30m", 1800),
    ("90s", 90),
])
def test_expires_in_forms(given: object, seconds: int) -> None:
    assert parse_options({"expires_in": given}).expires_in == seconds


def test_retention_defaults_and_refusals() -> None:
    settings = Settings({"BATCH_RETENTION_DAYS": 2, "BATCH_MAX_URLS": 10,
                         "BATCH_MAX_TOTAL_ITEMS": 10, "BATCH_MAX_SCHEMA_BYTES": 65536,
                         "BATCH_MAX_SCHEMA_DEPTH": 32})
    limits = Limits.from_settings(settings)
    assert parse_batch(URLS, SCHEMA, limits=limits).options.expires_in == 2 * 86_400
    assert parse_batch(URLS, SCHEMA, options={"expires_in": "1h"},
                       limits=limits).options.expires_in == 3600
    assert parse_batch(URLS, SCHEMA).options.expires_in is None  # default: kept
    with pytest.raises(BatchInputError) as info:
        parse_batch(URLS, SCHEMA, options={"expires_in": "soon", "content_retention_days": 0,
                                           "store_content": "perhaps"})
    assert info.value.code == "INVALID_OPTION"
    assert [d["option"] for d in info.value.details] == [
        "expires_in", "content_retention_days", "store_content"]
    urls = [URLS[0], {"url": URLS[1], "include_raw_html": True},
            {"url": "https://a.example/3", "screenshot": True}]
    with pytest.raises(BatchInputError) as kept:
        parse_batch(urls, SCHEMA, options={"store_content": False, "formats": ["markdown"]})
    assert [d["option"] for d in kept.value.details] == ["formats", "store_content"]
    assert "indexes [1, 2]" in kept.value.details[1]["message"]


def test_expired_batches_go_with_everything_derived_from_them(store: BatchStore) -> None:
    spec = parse_batch(URLS, SCHEMA, options={"expires_in": 60})
    batch = store.create_batch(spec)
    batch_id = batch["_id"]
    kept = store.create_batch(parse_batch(URLS, SCHEMA))
    assert batch["expires_at"] - batch["created_at"] == dt.timedelta(seconds=60)
    assert kept["expires_at"] is None
    store.append_urls(batch_id, parse_more_urls(["https://a.example/3"], batch), 100)
    items = list(store.iter_items(batch_id))
    assert {item["expires_at"] for item in items} == {store.get_batch(batch_id)["expires_at"]}
    assert len(items) == 3
    shot = store.save_screenshot(batch_id, 0, b"\x89PNG fake")
    store.db["idempotency"].insert_one({"_id": f"k-{batch_id}", "batch_id": batch_id,
                                        "created_at": utcnow()})
    store.db[OUTBOX].insert_one({"_id": f"e-{batch_id}", "batch_id": batch_id})

    assert store.sweep_expired()["batches"] == 0  # not yet
    removed = store.sweep_expired(utcnow() + dt.timedelta(seconds=61))
    assert removed["batches"] >= 1
    assert store.batches.find_one({"_id": batch_id}) is None
    assert store.items.count_documents({"batch_id": batch_id}) == 0
    assert store.db["screenshots.files"].count_documents({"metadata.batch_id": batch_id}) == 0
    assert store.db["screenshots.chunks"].count_documents(
        {"files_id": ObjectId(shot["gridfs_id"])}) == 0
    assert store.db["idempotency"].count_documents({"batch_id": batch_id}) == 0
    assert store.db[OUTBOX].count_documents({"batch_id": batch_id}) == 0
    assert_counters_match_items(store, kept["_id"])  # the other batch is untouched


def test_screenshots_of_a_batch_removed_by_ttl_are_swept(store: BatchStore) -> None:
    store.save_screenshot("b_" + "f" * 32, 0, b"\x89PNG orphan")
    assert store.sweep_expired()["screenshots"] >= 1
    assert store.db["screenshots.files"].count_documents(
        {"metadata.batch_id": "b_" + "f" * 32}) == 0


def test_content_past_its_retention_is_dropped_records_kept(store: BatchStore) -> None:
    spec = parse_batch(URLS, SCHEMA, options={"content_retention_days": 2,
                                              "formats": ["json", "markdown"]})
    batch_id = store.create_batch(spec)["_id"]
    (first, second) = store.claim(batch_id, "w", range(2), 60)
    shot = store.save_screenshot(batch_id, 0, b"\x89PNG page")
    records = [{"batch_id": batch_id, "index": doc["index"], "url": doc["url"],
                "status": "completed", "data": {"name": f"P{doc['index']}"},
                "content": {"markdown": "# page"}, "screenshot": shot if doc["index"] == 0
                else None} for doc in (first, second)]
    assert store.finish_items(records) == [True, True]
    assert store.sweep_expired(utcnow() + dt.timedelta(days=1))["content_dropped"] == 0
    assert store.sweep_expired(utcnow() + dt.timedelta(days=2, seconds=5))[
        "content_dropped"] == 2
    items = list(store.iter_items(batch_id))
    assert [(i["data"], i["content"], i["screenshot"]) for i in items] == [
        ({"name": "P0"}, None, None), ({"name": "P1"}, None, None)]
    assert store.db["screenshots.files"].count_documents({"metadata.batch_id": batch_id}) == 0
    assert_counters_match_items(store, batch_id)


@pytest.mark.slow
def test_store_content_false_keeps_records_only(crawl, site, store: BatchStore) -> None:
    result = crawl(urls=json.dumps([site.url("/products/3"), site.url("/articles/4")]),
                   render_js="never", store_content="false", expires_in="1d")
    assert result.returncode == 0, result.stderr[-3000:]
    batch_id = batch_id_from(result)
    batch = assert_counters_match_items(store, batch_id)
    assert batch["status"] == "completed"
    assert batch["expires_at"] - batch["created_at"] == dt.timedelta(days=1)
    for item in store.iter_items(batch_id):  # a content-only batch: metadata, no page kept
        assert item["data"]["title"] and item["content"] is None


def test_cached_llm_answers_go_with_the_last_batch_that_used_them(store: BatchStore) -> None:
    ledger = LLMLedger(store.db)
    doomed = store.create_batch(parse_batch(URLS, SCHEMA, options={"expires_in": 60}))["_id"]
    other = store.create_batch(parse_batch(URLS, SCHEMA))["_id"]
    ledger.cache_put(f"only-{doomed}", "m", "{}", 1, 1, doomed)
    ledger.cache_put(f"shared-{doomed}", "m", "{}", 1, 1, doomed)
    assert ledger.cache_get(f"shared-{doomed}", other) is not None  # used by another batch
    store.sweep_expired(utcnow() + dt.timedelta(seconds=61))
    assert ledger.cache_get(f"only-{doomed}", other) is None
    shared = store.db["llm_cache"].find_one({"_id": f"shared-{doomed}"})
    assert shared is not None and shared["batches"] == [other]


@pytest.mark.slow
def test_store_content_false_keeps_no_llm_answers(crawl, site, store: BatchStore,
                                                  fake_llm: FakeLLM) -> None:
    settings = fake_llm.settings(BATCH_LLM_CACHE_ENABLED=True)
    result = crawl(urls=site.url("/plain/5"), prompt="Extract the product name and price",
                   render_js="never", store_content="false", settings=settings)
    batch_id = batch_id_from(result)
    (item,) = store.iter_items(batch_id)
    assert item["status"] == "completed" and item["data"]["name"] == "Plain 5"
    assert item["content"] is None and fake_llm.calls >= 1
    assert store.db["llm_cache"].count_documents({"batches": batch_id}) == 0


def test_items_of_a_batch_removed_by_ttl_are_swept(store: BatchStore) -> None:
    batch_id = store.create_batch(parse_batch(URLS, SCHEMA, options={"expires_in": 60}))["_id"]
    store.batches.delete_one({"_id": batch_id})  # what MongoDB's TTL monitor does
    assert store.sweep_expired(utcnow() + dt.timedelta(seconds=61))["batches"] >= 1
    assert store.items.count_documents({"batch_id": batch_id}) == 0
    assert store.db["expiring"].count_documents({"_id": batch_id}) == 0
