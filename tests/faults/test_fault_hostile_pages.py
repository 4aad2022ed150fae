"""Hostile URLs and pages in one batch: each ends in its documented code, the rest is unaffected.

One crawl of 50+ URLs: SSRF spellings (and redirects to them), decompression
bombs, redirect loops and chains, slow drips, lies about lengths and
encodings, binary labelled as HTML, 50 MB of single-line JSON, 100,000 levels
of nesting, a record over MongoDB's 16 MB limit and keys MongoDB treats
specially, with ordinary product pages among them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchscraper.demo.site import product_expected
from batchscraper.inputs import parse_batch
from batchscraper.store import BatchStore
from batchscraper.store.storable import readable_record, storable_record, unescape_key
from tests.conftest import batch_id_from
from tests.faults.conftest import assert_exact, run_crawl
from tests.hostile_site import ENCODING_PAGES, HostileSite

# (URL or site path, expected error code; None: completed)
SSRF = [
    ("http://127.0.0.2/", "FETCH_BLOCKED"),  # loopback, but not the allowed 127.0.0.1/32
    ("http://2130706434/", "FETCH_BLOCKED"),  # 127.0.0.2 as one decimal number
    ("http://0x7f.2/", "FETCH_BLOCKED"),
    ("http://0177.0.0.2/", "FETCH_BLOCKED"),
    ("http://017700000002/", "FETCH_BLOCKED"),
    ("http://[::1]/", "FETCH_BLOCKED"),
    ("http://[::ffff:127.0.0.2]/", "FETCH_BLOCKED"),
    ("http://[::ffff:7f00:2]/", "FETCH_BLOCKED"),
    ("http://[64:ff9b::a00:1]/", "FETCH_BLOCKED"),  # NAT64 of 10.0.0.1
    ("http://[2002:a00:1::]/", "FETCH_BLOCKED"),  # 6to4 of 10.0.0.1
    ("http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/", "FETCH_BLOCKED"),  # Teredo, 10.0.0.1
    ("http://10.0.0.1/", "FETCH_BLOCKED"),
    ("http://172.16.5.4/", "FETCH_BLOCKED"),
    ("http://192.168.1.1/", "FETCH_BLOCKED"),
    ("http://169.254.169.254/latest/meta-data/", "FETCH_BLOCKED"),
    ("http://100.64.0.1/", "FETCH_BLOCKED"),
    ("http://0.0.0.0/", "FETCH_BLOCKED"),
    ("http://224.0.0.1/", "FETCH_BLOCKED"),
    ("http://[fe80::1]/", "FETCH_BLOCKED"),
    ("http://app.localhost/", "FETCH_BLOCKED"),
    ("http://printer.local/", "FETCH_BLOCKED"),
    ("http://metadata.google.internal/computeMetadata/v1/", "FETCH_BLOCKED"),
    ("/redirect-to?url=http://10.0.0.1/", "FETCH_BLOCKED"),  # a redirect hop
    ("/redirect-to?url=http://0xa9fea9fe/", "FETCH_BLOCKED"),  # 169.254.169.254 in hex
    ("/redirect-to?url=http://[::ffff:a9fe:a9fe]/", "FETCH_BLOCKED"),
]
PAGES = [
    ("/redirect-loop", "TOO_MANY_REDIRECTS"),
    ("/redirect/12", "TOO_MANY_REDIRECTS"),  # REDIRECT_MAX_TIMES is 10
    ("/hostile/gzip-bomb?mb=64", "CONTENT_TOO_LARGE"),  # 64 KB that inflate to 64 MB
    ("/hostile/gzip2-bomb?mb=64", "CONTENT_TOO_LARGE"),  # gzip inside gzip
    ("/hostile/deflate-bomb?mb=64", "CONTENT_TOO_LARGE"),
    ("/hostile/corrupt-gzip", "BAD_CONTENT_ENCODING"),
    ("/hostile/json-line?mb=50", "CONTENT_TOO_LARGE"),  # announced length
    ("/hostile/json-line?mb=50&chunked=1", "CONTENT_TOO_LARGE"),  # no length: cut at the cap
    ("/huge?mb=12", "CONTENT_TOO_LARGE"),
    # a byte every 0.2 s never leaves the connection idle: only a total time cap ends it
    ("/hostile/drip?bytes=5000&interval=0.2", "TIMEOUT"),
    ("/hostile/length-mismatch", "CONNECTION_FAILED"),
    ("/hostile/header-bomb?kb=256", "CONNECTION_FAILED"),
    ("/binary", "UNSUPPORTED_CONTENT_TYPE"),
    ("/binary-as-html", "UNSUPPORTED_CONTENT_TYPE"),
    # entities are not expanded; the page heuristics name it from its heading
    ("/hostile/xml-bomb", None),
    ("/hostile/empty", "EXTRACTION_FAILED"),
    ("/hostile/nested?depth=100000", None),
    *[(f"/hostile/encoding/{name}", None) for name in ENCODING_PAGES],
    ("/encoding/latin1", None),  # no structured data: its heading names it; its text is kept
    ("/hostile/dollar-keys", None),
    ("/hostile/big-record?mb=9", None),  # html + markdown + text: over 16 MB together
]
PRODUCTS = [(f"/products/{n}", None) for n in (11, 12, 13, 14, 15)]
PLAN = SSRF + PAGES + PRODUCTS
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "sku": {"type": "string"},
                   "$name": {"type": "string"}},
    "required": ["name"],
}
# HTTP only: the browser path has its own tests (tests/test_render.py)
OPTIONS = {"timeout_per_url": 3, "retries": 0, "concurrency": 16, "render_js": "never",
           "formats": ["json", "html", "markdown", "text"]}


@pytest.fixture(scope="module")
def hostile_batch(
    mongo_uri: str, batch_home: Path, site: HostileSite, store: BatchStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, dict[str, dict[str, Any]]]:
    """The batch's id and its items by path, after one crawl of every URL in PLAN."""
    urls = [url if url.startswith("http") else site.url(url) for url, _ in PLAN]
    urls_file = tmp_path_factory.mktemp("hostile") / "urls.txt"
    urls_file.write_text("\n".join(urls))
    result = run_crawl(
        mongo_uri, batch_home, urls=f"@{urls_file}", schema=json.dumps(SCHEMA),
        options=json.dumps(OPTIONS),
        # only the site's own address is allowed: other loopback spellings stay blocked;
        # the circuit breaker would (rightly) give up on a host failing this often
        settings={"BATCH_ALLOWED_NETWORKS": "127.0.0.1/32", "BATCH_BREAKER_ENABLED": False},
    )
    assert result.returncode == 0, result.stderr[-3000:]  # the process survived them all
    batch_id = batch_id_from(result)
    items = {path: item for (path, _), item in zip(PLAN, store.iter_items(batch_id), strict=True)}
    return batch_id, items


def test_plan_has_thirty_hostile_urls() -> None:
    assert len(SSRF) + len(PAGES) >= 30


@pytest.mark.slow
@pytest.mark.parametrize(("path", "code"), PLAN, ids=[path for path, _ in PLAN])
def test_each_url_ends_in_its_documented_code(
    hostile_batch: tuple[str, dict[str, dict[str, Any]]], path: str, code: str | None
) -> None:
    item = hostile_batch[1][path]
    if code is None:
        assert item["status"] == "completed", item.get("error")
    else:
        assert item["status"] == "failed"
        assert item["error"]["code"] == code, item["error"]
    if code in ("FETCH_BLOCKED", "CONTENT_TOO_LARGE", "TOO_MANY_REDIRECTS"):
        assert item["error"]["retryable"] is False


@pytest.mark.slow
def test_batch_counts_exactly_and_products_are_unaffected(
    store: BatchStore, hostile_batch: tuple[str, dict[str, dict[str, Any]]]
) -> None:
    batch_id, items = hostile_batch
    batch = assert_exact(store, batch_id, len(PLAN))
    assert batch["status"] == "partial"
    assert batch["counters"]["failed"] == sum(1 for _, code in PLAN if code)
    for path, _ in PRODUCTS:
        expected = product_expected(int(path.rsplit("/", 1)[1]))
        data = items[path]["data"]
        assert (data["name"], data["sku"]) == (expected["name"], expected["sku"])
        assert "Product" in items[path]["content"]["text"]


@pytest.mark.slow
def test_encodings_are_decoded(hostile_batch: tuple[str, dict[str, dict[str, Any]]]) -> None:
    items = hostile_batch[1]
    for name, (_, _, title) in ENCODING_PAGES.items():
        item = items[f"/hostile/encoding/{name}"]
        if name == "bogus-charset":  # an unknown charset: decoded as windows-1252, no crash
            assert item["data"]["name"].startswith("Caf")
        else:
            assert item["data"]["name"] == title, name
            assert title in item["content"]["text"]
    assert "Café crème" in items["/encoding/latin1"]["content"]["text"]


@pytest.mark.slow
def test_deep_nesting_and_xml_bomb_do_not_hurt(
    hostile_batch: tuple[str, dict[str, dict[str, Any]]],
) -> None:
    items = hostile_batch[1]
    deep = items["/hostile/nested?depth=100000"]
    assert deep["data"]["name"] == "Deep page"
    assert len(deep["content"]["html"]) > 1_000_000  # the whole page was kept as sent
    bomb = items["/hostile/xml-bomb"]
    assert "aaaaaaaaaa" * 100 not in json.dumps(bomb.get("content"))
    assert "aaaaaaaaaa" * 100 not in json.dumps(bomb.get("data"))


@pytest.mark.slow
def test_record_over_16_mb_is_stored_truncated_with_a_flag(
    hostile_batch: tuple[str, dict[str, dict[str, Any]]],
) -> None:
    item = hostile_batch[1]["/hostile/big-record?mb=9"]
    assert item["data"] == {"name": "Big product", "sku": "SKU-BIG", "%24name": "Big product"}
    truncated = item["content_truncated"]
    assert truncated and set(truncated) <= {"html", "markdown", "text"}
    for name, original in truncated.items():
        assert len(item["content"][name]) < original
    assert item["content"]["html"].startswith("<!DOCTYPE html>")


@pytest.mark.slow
def test_dollar_keys_are_escaped_in_the_store(
    hostile_batch: tuple[str, dict[str, dict[str, Any]]],
) -> None:
    item = hostile_batch[1]["/hostile/dollar-keys"]
    assert item["keys_escaped"] is True
    assert item["data"] == {"name": "Dollar product", "sku": "SKU-$1", "%24name": "Dollar product"}
    assert item["evidence"]["%24name"] == "jsonld"
    assert {unescape_key(key) for key in item["data"]} == {"name", "sku", "$name"}


def test_awkward_keys_and_numbers_round_trip_through_the_embedded_server(
    store: BatchStore,
) -> None:
    """``$``, ``.``, ``%`` and NUL in nested keys, and a 70-bit integer, written for real."""
    spec = parse_batch(["https://example.com/a"], SCHEMA)
    batch_id = store.create_batch(spec)["_id"]
    data = {"$where": {"a.b": [{"$gt": 1, "%25": "p", "nul\x00key": 2}]}, "big": 2**70}
    record = {"batch_id": batch_id, "index": 0, "url": "https://example.com/a",
              "status": "completed", "data": data, "evidence": {"$where": "jsonld"}}
    stored, error = storable_record(record, 15 * 1024 * 1024)
    assert error is None
    assert store.claim(batch_id, "test", range(1), 60)
    assert store.finish_items([stored]) == [True]
    (item,) = store.iter_items(batch_id)
    assert item["keys_escaped"] is True
    assert item["data"]["big"] == str(2**70)
    served = readable_record(item)
    assert served["data"] == {**data, "big": str(2**70)}
    assert served["evidence"] == {"$where": "jsonld"}
    assert "keys_escaped" not in served
    assert store.aggregate_counters(batch_id)["completed"] == 1


def test_record_whose_data_alone_is_too_large_fails_with_content_too_large() -> None:
    record = {"batch_id": "b", "index": 3, "url": "u", "status": "completed", "attempts": 1,
              "data": {"name": "x" * 2_000_000}, "content": {"text": "y" * 3_000_000}}
    stored, error = storable_record(record, 1_000_000)
    assert error is not None and error["code"] == "CONTENT_TOO_LARGE"
    assert stored["status"] == "failed" and stored["data"] is None
    assert stored["content_truncated"] == {"text": 3_000_000}
