"""The fetch cache (option max_age): Scrapy's HttpCacheMiddleware on MongoDB/GridFS.

Real crawls of the example site, one after another on the same embedded MongoDB: the
first stores, the next is served from the cache (no request reaches the site), and
entries made old in the store are revalidated with their ETag (304).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from scrapy import Request
from scrapy.settings import Settings

from batchscraper.demo.site import ExampleSite, product_expected
from batchscraper.downloadermiddlewares.pagecache import COLLECTION, MongoCacheStorage
from batchscraper.exceptions import InvalidOptionError
from batchscraper.inputs import parse_batch
from batchscraper.store import BatchStore
from tests.conftest import assert_counters_match_items, batch_id_from

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"},
                                           "price": {"type": "number"}},
          "required": ["name", "price"]}


@pytest.mark.parametrize("max_age", [-1, "soon", 31_536_001, True])
def test_bad_max_age_is_refused(max_age: Any) -> None:
    with pytest.raises(InvalidOptionError) as caught:
        parse_batch(["https://example.com/"], SCHEMA, options={"max_age": max_age})
    assert caught.value.code == "INVALID_OPTION" and "max_age" in caught.value.message


def test_max_age_is_an_option_stored_with_the_batch() -> None:
    spec = parse_batch(["https://example.com/"], SCHEMA, options={"max_age": 3600})
    assert spec.options.max_age == 3600 and spec.options.to_dict()["max_age"] == 3600
    assert parse_batch(["https://example.com/"], SCHEMA).options.max_age == 0


def test_entries_are_scoped_to_their_owner() -> None:
    storage = MongoCacheStorage(Settings({"BATCH_CACHE_MAX_BYTES": 10,
                                          "BATCH_CACHE_TTL_DAYS": 1}))
    request = Request("https://example.com/page")
    keys = set()
    for owner in ("alice", "bob", None):
        storage.owner = owner
        keys.add(storage.key(request))
    assert len(keys) == 3


def crawl_pages(crawl, urls: list[str], **options: Any) -> str:
    result = crawl(urls=json.dumps(urls), schema=json.dumps(SCHEMA),
                   options=json.dumps({"retries": 0, **options}))
    assert result.returncode == 0, result.stderr[-3000:]
    return batch_id_from(result)


@pytest.mark.slow
def test_second_crawl_is_served_from_the_cache_then_revalidated(
    crawl, site: ExampleSite, store: BatchStore
) -> None:
    paths = [f"/etag/{n}" for n in range(401, 404)] + [f"/products/{n}" for n in (404, 405)]
    urls = [site.url(path) for path in paths]

    first = crawl_pages(crawl, urls, max_age=3600)
    assert [item["cache"] for item in store.iter_items(first)] == ["miss"] * 5
    hits = [site.hits(path) for path in paths]

    second = crawl_pages(crawl, urls, max_age=3600)
    items = list(store.iter_items(second))
    assert [item["cache"] for item in items] == ["hit"] * 5
    assert [site.hits(path) for path in paths] == hits  # no request reached the site
    for item, path in zip(items, paths, strict=True):
        expected = product_expected(int(path.rsplit("/", 1)[1]))
        assert item["data"] == {"name": expected["name"], "price": expected["price"]}
    batch = assert_counters_match_items(store, second)
    assert (batch["counters"]["cache_hits"], batch["counters"]["cache_revalidated"]) == (5, 0)

    # an hour later, for a batch that accepts pages up to a minute old
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    store.db[COLLECTION].update_many({}, {"$set": {"fetched_at": old}})
    third = crawl_pages(crawl, urls, max_age=60)
    items = list(store.iter_items(third))
    # ETag pages: 304 (one request each, no body); the others have no validator: fetched again
    assert [item["cache"] for item in items] == ["revalidated"] * 3 + ["miss"] * 2
    assert [item["status"] for item in items] == ["completed"] * 5
    assert [site.hits(path) - n for path, n in zip(paths, hits, strict=True)] == [1] * 5
    batch = assert_counters_match_items(store, third)
    assert (batch["counters"]["cache_hits"], batch["counters"]["cache_revalidated"]) == (0, 3)

    # without max_age the cache is not used
    fourth = crawl_pages(crawl, urls)
    assert [item.get("cache") for item in store.iter_items(fourth)] == [None] * 5
    assert store.get_batch(fourth)["counters"]["cache_hits"] == 0


@pytest.mark.slow
def test_a_cached_page_never_bypasses_the_address_policy(
    crawl, site: ExampleSite, store: BatchStore
) -> None:
    urls = [site.url("/etag/411")]
    crawl_pages(crawl, urls, max_age=3600)
    result = crawl(urls=json.dumps(urls), schema=json.dumps(SCHEMA),
                   options=json.dumps({"max_age": 3600}),
                   settings={"BATCH_ALLOWED_NETWORKS": ""})
    batch_id = batch_id_from(result)
    (item,) = store.iter_items(batch_id)
    assert item["error"]["code"] == "FETCH_BLOCKED" and item.get("cache") is None
    assert store.get_batch(batch_id)["counters"]["cache_hits"] == 0
    assert_counters_match_items(store, batch_id)
