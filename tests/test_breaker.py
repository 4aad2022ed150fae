"""Politeness: the per-domain circuit breaker, per-domain health on the batch, robots.txt.

A second example site on 127.0.0.2 (its own download slot) answers 503; the
first one, on 127.0.0.1, stays healthy in the same batch.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from batchscraper.demo.site import ExampleSite, product_page
from batchscraper.inputs import parse_batch
from batchscraper.store import BatchStore
from tests.conftest import batch_id_from

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
FAILING_URLS, HEALTHY_URLS = 30, 10
WINDOW, STRIKES, CONCURRENCY = 4, 2, 4
BREAKER = {
    "BATCH_BREAKER_WINDOW": WINDOW,
    "BATCH_BREAKER_MIN_REQUESTS": WINDOW,
    "BATCH_BREAKER_STRIKES": STRIKES,
    "BATCH_BREAKER_DELAY": 0.2,
    "BATCH_DOMAIN_HEALTH_INTERVAL": 0.5,
    "BATCH_BROWSER_ENABLED": False,
}


@pytest.fixture(scope="module")
def failing_site() -> Iterator[ExampleSite]:
    with ExampleSite(host="127.0.0.2") as running:
        yield running


def crawl_urls(crawl: Any, urls: list[str], settings: dict[str, Any], **options: Any) -> str:
    result = crawl(
        urls=json.dumps(urls),
        schema=json.dumps(SCHEMA),
        options=json.dumps({"render_js": "never", **options}),
        settings=settings,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return batch_id_from(result)


def items(store: BatchStore, batch_id: str) -> list[dict[str, Any]]:
    return list(store.iter_items(batch_id))


@pytest.mark.slow
def test_failing_domain_is_slowed_then_its_items_fail_fast(
    crawl: Any, store: BatchStore, site: ExampleSite, failing_site: ExampleSite
) -> None:
    urls = [failing_site.url(f"/status/503?n={n}") for n in range(FAILING_URLS)]
    for n in range(HEALTHY_URLS):
        urls.insert(n * 3, site.url(f"/products/{n + 1}"))
    hits_before = failing_site.hits("/status/503")
    batch_id = crawl_urls(crawl, urls, BREAKER, concurrency=CONCURRENCY, retries=0)
    hits = failing_site.hits("/status/503") - hits_before

    records = items(store, batch_id)
    failing = [r for r in records if "127.0.0.2" in r["url"]]
    codes = Counter(r["error"]["code"] for r in failing)
    # each strike needs WINDOW answers; then at most CONCURRENCY requests were already queued
    assert hits <= WINDOW * STRIKES + CONCURRENCY
    assert codes == {"HTTP_ERROR": hits, "DOMAIN_CIRCUIT_OPEN": FAILING_URLS - hits}
    assert all(r["error"]["retryable"] for r in failing)
    assert all(r["status"] == "completed" for r in records if "127.0.0.1" in r["url"])

    batch = store.get_batch(batch_id)
    counters = batch["counters"]
    assert (counters["completed"], counters["failed"]) == (HEALTHY_URLS, FAILING_URLS)
    recount = store.aggregate_counters(batch_id)
    assert {k: counters[k] for k in recount} == recount

    domains = {entry["domain"]: entry for entry in batch["domains"]}
    assert set(domains) == {"127.0.0.1", "127.0.0.2"}
    bad, good = domains["127.0.0.2"], domains["127.0.0.1"]
    assert (bad["requests"], bad["errors"], bad["breaker"]) == (hits, hits, "open")
    assert bad["delay"] >= BREAKER["BATCH_BREAKER_DELAY"]  # slowed before it opened
    assert (good["requests"], good["errors"], good["breaker"]) == (HEALTHY_URLS, 0, "closed")


def test_domain_health_adds_up_workers_and_keeps_the_top(store: BatchStore) -> None:
    batch_id = store.create_batch(parse_batch(["https://a.example/"], SCHEMA))["_id"]

    def entry(domain: str, requests: int, errors: int, delay: float, breaker: str) -> dict:
        return {"domain": domain, "requests": requests, "errors": errors, "delay": delay,
                "breaker": breaker}

    store.save_domain_health(batch_id, "host.one:1:a", [
        entry("a.example", 10, 1, 0.5, "closed"), entry("b.example", 4, 4, 2.0, "open"),
    ], top=2)
    store.save_domain_health(batch_id, "host.two:2:b", [
        entry("a.example", 20, 9, 1.0, "slowed"), entry("c.example", 1, 0, 0.0, "closed"),
    ], top=2)
    # a worker's later write replaces its earlier one instead of adding to it
    store.save_domain_health(batch_id, "host.one:1:a", [
        entry("a.example", 12, 1, 0.5, "closed"), entry("b.example", 5, 5, 2.0, "open"),
    ], top=2)
    domains = store.get_batch(batch_id)["domains"]
    assert domains == [
        {**entry("a.example", 32, 10, 1.0, "slowed"), "error_rate": 0.312},
        {**entry("b.example", 5, 5, 2.0, "open"), "error_rate": 1.0},
    ]


class RobotsSite(ThreadingHTTPServer):
    """A site whose robots.txt disallows /private; it counts requests per path."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.hits[self.path] += 1
                if self.path == "/robots.txt":
                    body, kind = b"User-agent: *\nDisallow: /private\n", "text/plain"
                else:
                    body, kind = product_page(1), "text/html; charset=utf-8"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture(name="robots_site")
def robots_site_fixture() -> Iterator[RobotsSite]:
    server = RobotsSite()
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_robots_txt_is_obeyed_only_when_the_batch_asks(
    crawl: Any, store: BatchStore, robots_site: RobotsSite
) -> None:
    urls = [robots_site.url("/private/1"), robots_site.url("/products/1")]
    batch_id = crawl_urls(crawl, urls, {"BATCH_BROWSER_ENABLED": False}, robots_txt=True)
    private, public = items(store, batch_id)
    assert private["status"] == "failed"
    assert private["error"]["code"] == "ROBOTS_DISALLOWED"
    assert private["error"]["retryable"] is False
    assert public["status"] == "completed"
    assert robots_site.hits["/private/1"] == 0
    assert robots_site.hits["/robots.txt"] == 1

    # off by default: robots.txt is not even read
    batch_id = crawl_urls(crawl, [robots_site.url("/private/2")], {"BATCH_BROWSER_ENABLED": False})
    (private,) = items(store, batch_id)
    assert private["status"] == "completed"
    assert robots_site.hits["/robots.txt"] == 1
