"""``ignore_invalid_urls``: bad entries become failed items with INVALID_URL; the rest runs.

The parser and the store in-process (counters equal a recount; retry leaves them alone), and a
real crawl of the example site.
"""

from __future__ import annotations

import json

import pytest

from batchscraper.exceptions import BatchInputError, NothingToRetryError
from batchscraper.inputs import parse_batch
from batchscraper.store import BatchStore
from tests.conftest import assert_counters_match_items, batch_id_from

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
ENTRIES = ["https://a.example/1", "ftp://b.example/", 42, "https://a.example/1",
           {"url": "https://c.example/", "colour": "red"}, "https://d.example/"]


def test_invalid_entries_are_kept_with_their_reason() -> None:
    spec = parse_batch(ENTRIES, SCHEMA, options={"ignore_invalid_urls": True})
    assert [(u.url, (u.invalid or "")[:23]) for u in spec.urls] == [
        ("https://a.example/1", ""),
        ("ftp://b.example/", "only http and https URL"),
        ("42", "must be a URL string or"),
        ("https://a.example/1", ""),
        ("https://c.example/", "unknown keys ['colour']"),
        ("https://d.example/", ""),
    ]
    # without the option the batch is refused, every bad entry named
    with pytest.raises(BatchInputError) as info:
        parse_batch(ENTRIES, SCHEMA)
    assert info.value.code == "INVALID_URL"
    assert [d["index"] for d in info.value.details] == [1, 2, 4]


def test_the_option_does_not_excuse_other_problems() -> None:
    with pytest.raises(BatchInputError) as info:
        parse_batch([], {"type": "object"}, options={"ignore_invalid_urls": True})
    assert [(d["field"], d["code"]) for d in info.value.details] == [
        ("urls", "INVALID_URL"), ("schema", "INVALID_SCHEMA")]
    with pytest.raises(BatchInputError, match="ignore_invalid_urls: must be true or false"):
        parse_batch(ENTRIES, SCHEMA, options={"ignore_invalid_urls": "maybe"})


def test_stored_failed_counters_exact_and_never_retried(store: BatchStore) -> None:
    spec = parse_batch(ENTRIES, SCHEMA, options={"ignore_invalid_urls": True})
    batch = store.create_batch(spec)
    batch_id = batch["_id"]
    assert batch["counters"]["pending"] == 3 and batch["counters"]["failed"] == 3
    assert batch["failures"] == {"INVALID_URL": 3}
    assert_counters_match_items(store, batch_id)
    items = list(store.iter_items(batch_id))
    failed = [item for item in items if item["status"] == "failed"]
    assert [(i["index"], i["error"]["code"], i["error"]["retryable"]) for i in failed] == [
        (1, "INVALID_URL", False), (2, "INVALID_URL", False), (4, "INVALID_URL", False)]
    assert items[3]["dup_of"] == 0  # duplicates still share a fetch; bad entries never do
    assert [d["domain"] for d in batch["overview"]["domains"]] == ["a.example", "d.example"]
    store.cancel_unfinished(batch_id, "test")
    store.finalize_batch(batch_id)
    with pytest.raises(NothingToRetryError):
        store.retry_failed(batch_id)


@pytest.mark.slow
def test_crawl_runs_the_valid_urls(crawl, site, store: BatchStore) -> None:
    urls = [site.url("/products/1"), "javascript:alert(1)", site.url("/products/2")]
    result = crawl(urls=json.dumps(urls), schema=json.dumps(SCHEMA), render_js="never",
                   ignore_invalid_urls="true")
    assert result.returncode == 0, result.stderr[-3000:]
    batch_id = batch_id_from(result)
    batch = assert_counters_match_items(store, batch_id)
    assert batch["status"] == "partial"
    statuses = [(i["status"], (i.get("error") or {}).get("code"))
                for i in store.iter_items(batch_id)]
    assert statuses == [("completed", None), ("failed", "INVALID_URL"), ("completed", None)]
