"""Appending URLs to a batch: indexes continue, a finished batch reopens, counters stay exact.

The store in-process (the embedded MongoDB-wire server), and ``scrapy crawl batch -a
append_to=`` for real.
"""

from __future__ import annotations

import json
import threading

import pytest

from batchscraper.exceptions import BatchInputError, BatchStateError, TooLargeError
from batchscraper.inputs import Limits, parse_batch, parse_more_urls
from batchscraper.store import BatchStore
from tests.conftest import assert_counters_match_items, batch_id_from

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def ended_batch(store: BatchStore, urls: list[str], **options: object) -> dict:
    """A stored batch whose items all failed (WORKER_LOST): status ``failed``."""
    batch = store.create_batch(parse_batch(urls, SCHEMA, options=options or None))
    store.give_up(batch["_id"], 0)
    assert store.finalize_batch(batch["_id"]) == "failed"
    return store.get_batch(batch["_id"])


def test_appended_items_continue_the_indexes_and_reopen_the_batch(store: BatchStore) -> None:
    batch = ended_batch(store, ["https://a.example/1", "https://a.example/2"],
                        ignore_invalid_urls=True)
    urls = parse_more_urls(["https://a.example/3", "ftp://x.example/", "https://a.example/3"],
                           batch)
    first = store.append_urls(batch["_id"], urls, max_total=100)
    assert first == 2
    after = assert_counters_match_items(store, batch["_id"])
    assert after["status"] == "pending" and after["finished_at"] is None
    assert (after["counters"]["total"], after["counters"]["pending"]) == (5, 2)
    assert after["failures"] == {"WORKER_LOST": 2, "INVALID_URL": 1}
    items = list(store.iter_items(batch["_id"]))
    assert [(i["index"], i["status"]) for i in items] == [
        (0, "failed"), (1, "failed"), (2, "pending"), (3, "failed"), (4, "pending")]
    assert items[4]["dup_of"] == 2 and items[2]["duplicates"] == [4]


def test_bad_appends_store_nothing(store: BatchStore) -> None:
    batch = ended_batch(store, ["https://a.example/1"])
    with pytest.raises(BatchInputError) as info:  # the batch's own ignore_invalid_urls: off
        parse_more_urls(["https://a.example/2", "ftp://x.example/", "nope"], batch)
    assert info.value.code == "INVALID_URL"
    assert [(d["field"], d["index"]) for d in info.value.details] == [("urls", 1), ("urls", 2)]
    with pytest.raises(BatchInputError) as llm:
        parse_more_urls([{"url": "https://a.example/2", "extraction_prompt": "the name"}],
                        {**batch, "schema": None}, Limits(llm_configured=False))
    assert (llm.value.code, llm.value.http_status) == ("INVALID_INPUT", 422)
    with pytest.raises(TooLargeError):
        store.append_urls(batch["_id"], parse_more_urls(["https://a.example/2"] * 3, batch), 3)
    cancelled = store.create_batch(parse_batch(["https://a.example/1"], SCHEMA))
    store.cancel_batch(cancelled["_id"])
    with pytest.raises(BatchStateError):
        store.append_urls(cancelled["_id"], parse_more_urls(["https://a.example/2"], batch), 9)
    for batch_id, status in ((batch["_id"], "failed"), (cancelled["_id"], "cancelled")):
        after = assert_counters_match_items(store, batch_id)
        assert (after["counters"]["total"], after["status"]) == (1, status)


def test_concurrent_appends_get_consecutive_ranges(store: BatchStore) -> None:
    batch = ended_batch(store, ["https://a.example/0"])
    firsts: list[int] = []

    def append(n: int) -> None:
        urls = parse_more_urls([f"https://a.example/{n}/{i}" for i in range(3)], batch)
        firsts.append(store.append_urls(batch["_id"], urls, max_total=1000))

    threads = [threading.Thread(target=append, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(firsts) == [1, 4, 7, 10]
    after = assert_counters_match_items(store, batch["_id"])
    assert after["counters"]["total"] == 13
    indexes = [item["index"] for item in store.iter_items(batch["_id"])]
    assert indexes == list(range(13))


@pytest.mark.slow
def test_append_to_from_the_command_line(crawl, site, store: BatchStore) -> None:
    first = crawl(urls=site.url("/products/1"), schema=json.dumps(SCHEMA), render_js="never")
    batch_id = batch_id_from(first)
    assert store.get_batch(batch_id)["status"] == "completed"
    more = [site.url("/products/2"), {"url": site.url("/products/3"), "formats": ["text"]}]
    again = crawl(append_to=batch_id, urls=json.dumps(more), concurrency="2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"Appended 2 URLs to batch {batch_id} (indexes 1-2)" in again.stderr
    batch = assert_counters_match_items(store, batch_id)
    assert batch["status"] == "completed" and batch["finished_runs"] == 2
    items = list(store.iter_items(batch_id))
    assert [(i["index"], i["data"]["name"]) for i in items] == [
        (0, "Product 1"), (1, "Product 2"), (2, "Product 3")]
    assert set(items[2]["content"]) == {"text"}
    refused = crawl(append_to=batch_id, urls=site.url("/products/4"), schema="{}")
    assert refused.returncode == 2 and "append_to: cannot be combined with ['schema']" in \
        refused.stderr
    assert store.get_batch(batch_id)["counters"]["total"] == 3
