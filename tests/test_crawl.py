"""End to end: ``scrapy crawl batch`` against the local site, records read back from MongoDB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchscraper.demo.site import ExampleSite, product_expected
from batchscraper.extensions.progress import progress_line
from batchscraper.inputs import parse_batch
from batchscraper.store import BatchStore
from tests.conftest import assert_counters_match_items, batch_id_from

PRODUCT_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "sku": {"type": "string"},
        "price": {"type": "number"},
    },
    "required": ["name", "price"],
}

# (path, expected status, expected error code) — repeated to build a 200-URL batch
FAILING = [
    ("/status/404", "failed", "HTTP_ERROR"),
    ("/status/500", "failed", "HTTP_ERROR"),
    ("/redirect-loop", "failed", "TOO_MANY_REDIRECTS"),
    ("/binary", "failed", "UNSUPPORTED_CONTENT_TYPE"),
    ("/binary-as-html", "failed", "UNSUPPORTED_CONTENT_TYPE"),
    ("/plain/7", "failed", "VALIDATION_FAILED"),
    ("/huge?mb=12", "failed", "CONTENT_TOO_LARGE"),
    ("/slow?delay=5", "failed", "TIMEOUT"),
]


def mixed_urls(site: ExampleSite) -> list[tuple[str, str, str | None]]:
    """200 URLs: products (some duplicated) with failing URLs spread among them."""
    plan: list[tuple[str, str, str | None]] = []
    for n in range(1, 201):
        if n % 10 == 0:
            path, status, code = FAILING[(n // 10) % len(FAILING)]
        elif n % 25 == 1:
            path, status, code = "/products/3", "completed", None  # duplicate URL
        else:
            path, status, code = f"/products/{n}", "completed", None
        plan.append((site.url(path), status, code))
    return plan


@pytest.mark.slow
def test_mixed_batch_of_200_urls(crawl, site: ExampleSite, store: BatchStore, tmp_path: Path):
    plan = mixed_urls(site)
    urls_file = tmp_path / "urls.txt"
    urls_file.write_text("\n".join(url for url, _, _ in plan))
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(PRODUCT_SCHEMA))
    feed = tmp_path / "results.jsonl"
    hits_before = site.hits("/products/3")

    result = crawl(
        urls=f"@{urls_file}",
        schema=f"@{schema_file}",
        options=json.dumps({"concurrency": 16, "timeout_per_url": 2, "retries": 0}),
        # the plan's outcomes are structured data's; page heuristics have their own tests
        settings={"FEEDS": json.dumps({str(feed): {"format": "jsonlines"}}),
                  "BATCH_HEURISTICS_ENABLED": False},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    batch_id = batch_id_from(result)

    items = list(store.iter_items(batch_id))
    assert [item["index"] for item in items] == list(range(200))
    for item, (url, status, code) in zip(items, plan, strict=True):
        assert item["url"] == url
        assert item["status"] == status, (url, item.get("error"))
        if code:
            assert item["error"]["code"] == code, (url, item["error"])
        else:
            n = int(url.rsplit("/", 1)[1])
            expected = product_expected(n)
            assert item["data"]["name"] == expected["name"]
            assert item["data"]["sku"] == expected["sku"]
            assert item["data"]["price"] == pytest.approx(expected["price"])
            assert item["evidence"]["price"] == "jsonld"
    assert site.hits("/products/3") - hits_before == 1  # duplicates are fetched once
    assert {item["http_status"] for item in items if item["url"].endswith("/status/404")} == {404}

    batch = assert_counters_match_items(store, batch_id)
    failed = sum(1 for _, status, _ in plan if status == "failed")
    assert batch["counters"]["failed"] == failed
    assert batch["counters"]["completed"] == 200 - failed
    assert batch["counters"]["records_extracted"] == 200 - failed
    assert batch["status"] == "partial"
    assert batch["finished_at"] is not None

    # the feed gets one record per fetch; duplicates share their primary's record
    exported = [json.loads(line) for line in feed.read_text().splitlines()]
    primaries = [item["index"] for item in items if "dup_of" not in item]
    assert sorted(record["index"] for record in exported) == primaries
    assert all("body" not in record for record in exported)
    assert f"Batch {batch_id} partial" in result.stderr

    # the batch has ended: running it again is refused (pointing to rerun_of / retry)
    # and counts nothing twice
    again = crawl(batch_id=batch_id)
    assert again.returncode == 2 and "INVALID_STATE" in again.stderr, again.stderr[-3000:]
    assert store.get_batch(batch_id)["counters"] == batch["counters"]


@pytest.mark.slow
def test_http_errors_keep_status_and_retry_after(crawl, site: ExampleSite, store: BatchStore):
    urls = [site.url("/status/404"), site.url("/flaky/ra1?fail=2&code=503&retry_after=1")]
    result = crawl(urls=",".join(urls), schema=json.dumps(PRODUCT_SCHEMA), retries=2)
    assert result.returncode == 0, result.stderr[-3000:]
    not_found, flaky = store.iter_items(batch_id_from(result))
    assert not_found["error"] == {
        "code": "HTTP_ERROR",
        "message": not_found["error"]["message"],
        "retryable": False,
    }
    assert not_found["http_status"] == 404
    assert flaky["status"] == "completed"
    assert flaky["attempts"] == 3
    assert site.hits("/flaky/ra1") == 3
    assert flaky["duration_ms"] >= 2000  # two Retry-After: 1 waits


@pytest.mark.slow
def test_run_stored_batch_by_id(crawl, site: ExampleSite, store: BatchStore):
    spec = parse_batch([site.url(f"/products/{n}") for n in (11, 12, 13)], PRODUCT_SCHEMA)
    batch = store.create_batch(spec)
    result = crawl(batch_id=batch["_id"])
    assert result.returncode == 0, result.stderr[-3000:]
    stored = assert_counters_match_items(store, batch["_id"])
    assert stored["status"] == "completed", result.stderr[-1500:]
    assert [item["data"]["sku"] for item in store.iter_items(batch["_id"])] == [
        product_expected(n)["sku"] for n in (11, 12, 13)
    ]


@pytest.mark.slow
def test_fail_fast_cancels_the_rest(crawl, site: ExampleSite, store: BatchStore):
    urls = [site.url("/status/404")] + [site.url(f"/slow?delay=0.3&n={n}") for n in range(40)]
    result = crawl(
        urls=",".join(urls), schema=json.dumps(PRODUCT_SCHEMA), fail_fast="true", concurrency=1
    )
    assert result.returncode == 0, result.stderr[-3000:]
    batch = assert_counters_match_items(store, batch_id_from(result))
    assert batch["counters"]["failed"] == 1
    assert batch["counters"]["cancelled"] > 30
    assert batch["error"]["code"] == "FAIL_FAST"
    assert batch["status"] == ("partial" if batch["counters"]["completed"] else "failed")


@pytest.mark.slow
def test_reextract_from_stored_content_without_fetching(crawl, site: ExampleSite,
                                                        store: BatchStore):
    urls = [site.url(f"/products/{n}") for n in (31, 32)] + [site.url("/status/404")]
    first = crawl(urls=",".join(urls), schema=json.dumps(PRODUCT_SCHEMA), formats="json,html")
    source = batch_id_from(first)
    hits = site.hits("/products/31")
    brand_schema = {"type": "object", "properties": {"brand": {"type": "string"}},
                    "required": ["brand"]}
    again = crawl(reextract_from=source, schema=json.dumps(brand_schema))
    assert again.returncode == 0, again.stderr[-3000:]
    batch = store.get_batch(batch_id_from(again))
    assert batch["reextract_from"] == source
    assert batch["options"]["formats"] == ["html"]
    items = list(store.iter_items(batch["_id"]))
    assert [item["data"] for item in items[:2]] == [
        {"brand": product_expected(n)["brand"]} for n in (31, 32)]
    assert items[2]["error"]["code"] == "HTTP_ERROR"  # the source's own failure, kept
    assert site.hits("/products/31") == hits  # nothing fetched again
    assert_counters_match_items(store, batch["_id"])


@pytest.mark.slow
def test_reextract_from_a_batch_without_content_is_refused(crawl, site: ExampleSite,
                                                          store: BatchStore):
    first = crawl(urls=site.url("/products/33"), schema=json.dumps(PRODUCT_SCHEMA))
    before = store.batches.count_documents({})
    again = crawl(reextract_from=batch_id_from(first), schema=json.dumps(PRODUCT_SCHEMA))
    assert again.returncode == 2
    assert "INVALID_STATE" in again.stderr and "kept no page content" in again.stderr
    assert store.batches.count_documents({}) == before


def test_the_progress_line_shows_requests_in_flight_and_leased_items():
    counters = {"total": 200, "pending": 40, "leased": 24, "running": 8, "completed": 125,
                "failed": 3, "cancelled": 0}
    assert progress_line("b_1", counters, 840.0) == (
        "b_1: 128/200 done (64%), 3 failed, 8 running, 24 leased, 840 pages/min, ETA 5s"
    )
