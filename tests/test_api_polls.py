"""Light polls of the batch API against a real Scrapyd and a stored 10,000-item batch.

``limit=0`` answers the batch's state only; item pages leave content out unless
asked; ``updated_after`` reads only the items that moved; Records-tab reads sort
and match on data fields. The sizes asserted are the issue's target (< 5 KB per
poll of a running 10,000-item batch); the figures are printed for the record.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from batchscraper.demo.site import ExampleSite
from batchscraper.inputs import parse_batch
from batchscraper.store import BatchStore, utcnow
from tests.api_fixtures import (  # noqa: F401  (fixtures)
    ScrapydServer,
    assert_error,
    assert_matches,
    openapi_fixture,
    scrapyd_fixture,
    wait_for,
)
from tests.conftest import assert_counters_match_items

pytestmark = pytest.mark.slow

TOTAL = 10_000
SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string"}, "price": {"type": "number"},
    "offers": {"type": "object", "properties": {"currency": {"type": "string"}}},
    "tags": {"type": "array", "items": {"type": "string"}},
}}
MARKDOWN = "# A product page\n\n" + "Some long text of the page. " * 400  # ~11 KB kept per item
POLL_TARGET = 5_000


def finish(store: BatchStore, batch_id: str, indexes: range) -> None:
    """Lease the items and write them back as a worker would: records with kept content."""
    claimed = store.claim(batch_id, "test-worker", indexes, 600)
    assert len(claimed) == len(indexes)
    records = []
    for doc in claimed:
        n = doc["index"]
        ok = n % 10 != 9
        records.append({
            "batch_id": batch_id, "index": n, "url": doc["url"],
            "status": "completed" if ok else "failed",
            "data": {"name": f"Product {n}", "price": float(n % 97), "tags": ["a", "b"],
                     "offers": {"currency": "EUR"}} if ok else None,
            "evidence": {"name": "jsonld", "price": "jsonld"} if ok else None,
            "error": None if ok else {"code": "HTTP_ERROR", "message": "404", "retryable": False},
            "content": {"markdown": MARKDOWN}, "duration_ms": 12,
        })
    for first in range(0, len(records), 200):
        assert all(store.finish_items(records[first:first + 200]))


@pytest.fixture(scope="module")
def big_batch(store: BatchStore) -> Iterator[str]:
    """A running batch of 10,000 items: 300 finished (with content), the rest pending."""
    urls = [f"https://shop.example/p/{n}" for n in range(TOTAL)]
    batch_id = str(store.create_batch(parse_batch(urls, SCHEMA), owner="alice")["_id"])
    store.mark_running(batch_id)
    finish(store, batch_id, range(0, 300))
    yield batch_id
    store.cancel_batch(batch_id)


def get(scrapyd: ScrapydServer, path: str, **query: Any) -> Any:
    answer = scrapyd.call("GET", f"{path}?{urllib.parse.urlencode(query)}" if query else path)
    assert answer.status == 200, answer.body[:500]
    return answer


def test_a_poll_of_a_running_10000_item_batch_is_small(
    scrapyd: ScrapydServer, openapi: dict, big_batch: str
) -> None:
    path = f"/batches/{big_batch}"
    # what the dashboard polled every 1.5 s before: 50 items with their content
    before = get(scrapyd, path, limit=50, include="content")
    page = get(scrapyd, path, limit=50)  # the same page now: content left out by default
    poll = get(scrapyd, path, limit=0)
    print(f"\npoll of a running {TOTAL:,}-item batch: {len(before.body):,} bytes (50 items "
          f"with content), {len(page.body):,} bytes (50 items), {len(poll.body):,} bytes "
          "(limit=0)")
    assert len(poll.body) < POLL_TARGET
    state = poll.json()
    assert_matches(openapi, "BatchState", state)
    assert not {"items", "items_pagination", "schema", "options", "prompt"} & set(state)
    assert state["status"] == "running"
    assert state["counters"]["completed"] == 270 and state["counters"]["failed"] == 30
    assert state["failures"] == {"HTTP_ERROR": 30}
    assert state["progress"] == {"done": 300, "total": TOTAL, "percent": 3.0}


def test_item_pages_leave_content_out_unless_asked(
    scrapyd: ScrapydServer, openapi: dict, big_batch: str
) -> None:
    path = f"/batches/{big_batch}"
    detail = get(scrapyd, path, limit=50).json()
    assert_matches(openapi, "BatchDetail", detail)
    assert [item["index"] for item in detail["items"]] == list(range(50))
    assert all("content" not in item for item in detail["items"])
    assert detail["items"][0]["data"]["name"] == "Product 0"
    page = get(scrapyd, f"{path}/items", limit=5, include="content").json()
    assert_matches(openapi, "ItemsPage", page)
    assert [item["content"]["markdown"] for item in page["items"]] == [MARKDOWN] * 5
    picked = get(scrapyd, f"{path}/items", limit=3, fields="status,data").json()["items"]
    assert [set(item) for item in picked] == [{"index", "status", "data"}] * 3
    # the NDJSON stream is the export: every field, content included
    stream = get(scrapyd, f"{path}/items", status="failed", format="ndjson")
    lines = [json.loads(line) for line in stream.body.splitlines()]
    assert len(lines) == 30 and all(line["content"]["markdown"] == MARKDOWN for line in lines)


def test_updated_after_reads_only_the_items_that_moved(
    scrapyd: ScrapydServer, store: BatchStore, big_batch: str
) -> None:
    path = f"/batches/{big_batch}/items"
    first = get(scrapyd, path, limit=1).json()
    as_of = dt.datetime.fromisoformat(first["as_of"])
    assert as_of <= utcnow()
    mark = utcnow()
    finish(store, big_batch, range(5000, 5040))
    changed = get(scrapyd, path, updated_after=mark.isoformat(), limit=500,
                  fields="index,status").json()
    assert [item["index"] for item in changed["items"]] == list(range(5000, 5040))
    assert changed["pagination"]["total"] == 40
    failed = get(scrapyd, path, updated_after=mark.isoformat(), status="failed").json()
    assert [item["index"] for item in failed["items"]] == [5009, 5019, 5029, 5039]
    # the overlap: an answer's as_of reaches back, so nothing written just before it is missed
    cursor = dt.datetime.fromisoformat(changed["as_of"])
    again = get(scrapyd, path, updated_after=changed["as_of"], fields="index", limit=500).json()
    stored = store.items.find({"batch_id": big_batch, "updated_at": {"$gt": cursor}}, {"index": 1})
    assert [item["index"] for item in again["items"]] == sorted(doc["index"] for doc in stored)
    later = (utcnow() + dt.timedelta(hours=1)).isoformat()
    assert get(scrapyd, path, updated_after=later).json()["items"] == []


def test_records_sort_and_match_on_data_fields(
    scrapyd: ScrapydServer, big_batch: str
) -> None:
    path = f"/batches/{big_batch}/items"
    top = get(scrapyd, path, sort="-data.price", limit=4, fields="index,data").json()
    assert [item["data"]["price"] for item in top["items"]] == [96.0, 96.0, 96.0, 95.0]
    assert [item["index"] for item in top["items"][:3]] == [96, 193, 290]
    assert top["pagination"]["total"] == TOTAL
    # items without the field (failed and pending ones) come last in either direction
    last = get(scrapyd, path, sort="data.price", page=TOTAL // 500, limit=500,
               fields="index,data").json()["items"]
    assert last[-1]["index"] == TOTAL - 1 and last[-1].get("data") is None
    found = get(scrapyd, path, match="data.name:PRODUCT 12", fields="index").json()
    assert [item["index"] for item in found["items"]] == [12, 120, 121, 122, 123, 124, 125,
                                                          126, 127, 128]
    nested = get(scrapyd, path, match="data.offers.currency:eur", limit=1).json()
    completed = get(scrapyd, f"/batches/{big_batch}", limit=0).json()["counters"]["completed"]
    assert nested["pagination"]["total"] == completed


def test_bad_item_queries_list_every_problem(
    scrapyd: ScrapydServer, openapi: dict, store: BatchStore, big_batch: str
) -> None:
    before = store.get_batch(big_batch)
    query = urllib.parse.urlencode({
        "include": "markdown", "fields": "index,nope", "updated_after": "yesterday",
        "sort": "data.weight", "match": "data.name", "status": "done",
    })
    for path in (f"/batches/{big_batch}/items", f"/batches/{big_batch}"):
        error = assert_error(openapi, scrapyd.call("GET", f"{path}?{query}"), 400,
                             "INVALID_INPUT")
        assert [problem["parameter"] for problem in error["details"]] == [
            "status", "updated_after", "include", "fields", "sort", "match"]
        assert "nope" in error["message"] and "'yesterday'" in error["message"]
    naive = scrapyd.call("GET", f"/batches/{big_batch}/items?updated_after=2026-01-01T00:00:00")
    assert assert_error(openapi, naive, 400, "INVALID_INPUT")["details"][0]["parameter"] == (
        "updated_after")
    for limit in ("-1", "501", "x"):
        answer = scrapyd.call("GET", f"/batches/{big_batch}?limit={limit}")
        assert "limit" in assert_error(openapi, answer, 400, "INVALID_INPUT")["message"]
    assert scrapyd.call("GET", f"/batches/{big_batch}/items?limit=0").status == 400
    after = store.get_batch(big_batch)
    assert (after["counters"], after["status"]) == (before["counters"], before["status"])


def test_running_counts_requests_in_flight_and_leased_the_rest(
    scrapyd: ScrapydServer, openapi: dict, store: BatchStore, site: ExampleSite
) -> None:
    """At concurrency 2 the worker leases a whole chunk: the rest wait as ``leased``."""
    key = uuid.uuid4().hex[:6]
    urls = [site.url(f"/slow?delay=1.5&n={n}&k={key}") for n in range(10)]
    answer = scrapyd.call("POST", "/batches", {
        "urls": urls, "schema": {"type": "object", "properties": {"name": {"type": "string"}}},
        "options": {"concurrency": 2, "retries": 0, "render_js": "never"}})
    assert answer.status == 202, answer.body[:500]
    batch_id = answer.json()["batch_id"]
    seen: list[dict[str, int]] = []

    def finished() -> bool:
        state = get(scrapyd, f"/batches/{batch_id}", limit=0).json()
        seen.append(state["counters"])
        return state["status"] in ("completed", "partial", "failed", "cancelled")

    wait_for(finished, timeout=120, interval=0.2, what="the batch to finish")
    assert_matches(openapi, "Counters", seen[-1])
    # in flight: the two requests the downloader holds (and one whose record is being written)
    assert max(counters["running"] for counters in seen) <= 3, seen
    assert any(counters["running"] and counters["leased"] for counters in seen), seen
    assert seen[-1]["leased"] == seen[-1]["running"] == 0
    assert_counters_match_items(store, batch_id)
