"""JavaScript pages through real Chromium (scrapy-playwright + Debian's chromium)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchscraper.demo.site import ExampleSite, product_expected
from batchscraper.store import BatchStore
from bench._common import comm, descendants
from tests.conftest import REPO, batch_id_from

pytestmark = pytest.mark.browser

SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "sku": {"type": "string"},
            "price": {"type": "number"},
        },
        "required": ["name", "sku", "price"],
    }
)


def assert_product(item: dict, n: int) -> None:
    assert item["status"] == "completed", (
        item.get("error"),
        item["render_mode"],
        item.get("render_reason"),
    )
    assert item["data"]["sku"] == product_expected(n)["sku"]
    assert item["data"]["price"] == pytest.approx(product_expected(n)["price"])


def test_always_renders_js_only_pages(crawl, site: ExampleSite, store: BatchStore):
    urls = [site.url(f"/app-shell/{n}") for n in (1, 2, 3)]
    result = crawl(urls=",".join(urls), schema=SCHEMA, render_js="always")
    assert result.returncode == 0, result.stderr[-3000:]
    items = list(store.iter_items(batch_id_from(result)))
    for n, item in zip((1, 2, 3), items, strict=True):
        assert_product(item, n)
        assert item["render_mode"] == "headless"
        assert item["render_reason"] == "render_js: always"


def test_auto_renders_only_the_app_shells_of_a_mixed_batch(
    crawl, site: ExampleSite, store: BatchStore
):
    numbers = list(range(20, 30))
    urls = [site.url(f"/{'app-shell' if n % 2 else 'products'}/{n}") for n in numbers]
    shells_before = sum(site.hits(f"/app-shell/{n}") for n in numbers)
    result = crawl(urls=",".join(urls), schema=SCHEMA)
    assert result.returncode == 0, result.stderr[-3000:]
    items = list(store.iter_items(batch_id_from(result)))
    for n, item in zip(numbers, items, strict=True):
        assert_product(item, n)
        assert item["render_mode"] == ("headless" if n % 2 else "fetch")
        if n % 2:
            assert item["render_reason"].startswith("auto: app shell")
    # each app shell: one HTTP fetch, then one browser navigation
    assert sum(site.hits(f"/app-shell/{n}") for n in numbers) - shells_before == 10


def test_auto_escalates_when_required_fields_are_missing(
    crawl, site: ExampleSite, store: BatchStore
):
    # heuristics off: they read the plain page's visible price and SKU, and a record
    # that is valid after the fetch is never escalated
    result = crawl(urls=site.url("/js-data/7"), schema=SCHEMA,
                   settings={"BATCH_HEURISTICS_ENABLED": False})
    assert result.returncode == 0, result.stderr[-3000:]
    (item,) = store.iter_items(batch_id_from(result))
    assert_product(item, 7)
    assert item["render_mode"] == "headless"
    assert item["render_reason"] == "auto: VALIDATION_FAILED after fetch"


def scrapy_stat(stderr: str, name: str) -> int:
    """A counter from the stats Scrapy dumps when the crawl ends (0 when absent)."""
    match = re.search(rf"'{re.escape(name)}': (\d+)", stderr)
    return int(match.group(1)) if match else 0


def test_tabs_are_reused_and_the_browser_restarts_every_n_pages(
    crawl, site: ExampleSite, store: BatchStore
):
    numbers = list(range(40, 52))
    urls = [site.url(f"/app-shell/{n}") for n in numbers]
    result = crawl(
        urls=",".join(urls),
        schema=SCHEMA,
        render_js="always",
        concurrency=2,
        settings={"BATCH_BROWSER_RESTART_PAGES": 4, "BATCH_BROWSER_MAX_PAGES": 2},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    items = list(store.iter_items(batch_id_from(result)))
    for n, item in zip(numbers, items, strict=True):
        assert_product(item, n)
    restarts = scrapy_stat(result.stderr, "batch/render/browser_restarts")
    assert restarts >= 2, result.stderr[-3000:]
    assert scrapy_stat(result.stderr, "playwright/browser_count") >= restarts
    # 4 pages per browser, at most 2 tabs each: fewer tabs than pages
    assert scrapy_stat(result.stderr, "playwright/page_count") < len(numbers)


def test_never_does_not_render(crawl, site: ExampleSite, store: BatchStore):
    result = crawl(urls=site.url("/app-shell/4"), schema=SCHEMA, render_js="never")
    (item,) = store.iter_items(batch_id_from(result))
    assert item["render_mode"] == "fetch"
    assert item["status"] == "failed"


def test_wait_for_actions_and_screenshot(crawl, site: ExampleSite, store: BatchStore):
    urls = json.dumps(
        [
            {
                "url": site.url("/app-shell/5"),
                "render_js": "always",
                "wait_for": "#root h1",
                "actions": [{"type": "scroll"}, {"type": "wait", "ms": 10}],
                "screenshot": True,
                "viewport": {"width": 800, "height": 600},
            }
        ]
    )
    result = crawl(urls=urls, schema=SCHEMA)
    assert result.returncode == 0, result.stderr[-3000:]
    (item,) = store.iter_items(batch_id_from(result))
    assert_product(item, 5)
    shot = item["screenshot"]
    png = store.load_screenshot(shot["gridfs_id"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) == shot["bytes"]


def test_more_downloads_than_tabs_wait_for_a_tab(crawl, site: ExampleSite, store: BatchStore):
    """Concurrency 8, 2 tabs: idle tabs in the pool must not starve the waiting downloads."""
    numbers = list(range(70, 82))
    result = crawl(
        urls=",".join(site.url(f"/app-shell/{n}") for n in numbers),
        schema=SCHEMA,
        render_js="always",
        concurrency=8,
        retries=0,
        timeout_per_url=5,
        settings={"BATCH_BROWSER_MAX_PAGES": 2},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    items = list(store.iter_items(batch_id_from(result)))
    for n, item in zip(numbers, items, strict=True):
        assert_product(item, n)
    assert scrapy_stat(result.stderr, "playwright/page_count") <= 2 + 1  # a retired tab at most


def test_urls_differing_only_in_their_fragment_are_each_loaded(
    crawl, site: ExampleSite, store: BatchStore
):
    """A reused tab leaves its page, so ``#b`` after ``#a`` is a real navigation."""
    urls = [site.url(f"/app-shell/83#{part}") for part in "abc"]
    before = site.hits("/app-shell/83")
    result = crawl(
        urls=",".join(urls),
        schema=SCHEMA,
        render_js="always",
        concurrency=1,
        settings={"BATCH_BROWSER_MAX_PAGES": 1},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for item in store.iter_items(batch_id_from(result)):
        assert_product(item, 83)
        assert item["http_status"] == 200
    assert site.hits("/app-shell/83") - before == 3
    assert "returned None" not in result.stderr


def test_urls_with_their_own_browser_options_share_the_browser(
    crawl, site: ExampleSite, store: BatchStore
):
    """Each set of per-URL context options gets a context, closed after its last page."""
    entries = [
        {"url": site.url("/app-shell/61")},
        {"url": site.url("/app-shell/62"), "viewport": {"width": 800, "height": 600}},
        {"url": site.url("/app-shell/63"), "user_agent": "batch-test-agent"},
        {"url": site.url("/app-shell/64"), "viewport": {"width": 800, "height": 600}},
        {"url": site.url("/app-shell/65")},
    ]
    urls = json.dumps([{**entry, "render_js": "always"} for entry in entries])
    result = crawl(urls=urls, schema=SCHEMA, timeout_per_url=5, retries=0)
    assert result.returncode == 0, result.stderr[-3000:]
    items = list(store.iter_items(batch_id_from(result)))
    for n, item in zip(range(61, 66), items, strict=True):
        assert_product(item, n)


def test_browser_timeout_is_timeout(crawl, site: ExampleSite, store: BatchStore):
    result = crawl(
        urls=site.url("/slow?delay=6"),
        schema=SCHEMA,
        render_js="always",
        timeout_per_url=1,
        retries=0,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (item,) = store.iter_items(batch_id_from(result))
    assert item["error"]["code"] == "TIMEOUT", item["error"]
    assert item["render_mode"] == "headless"


def test_a_browser_download_has_a_hard_deadline(crawl, site: ExampleSite, store: BatchStore):
    """Waits that no Playwright timeout bounds still end, as a retryable TIMEOUT."""
    urls = json.dumps(
        [
            {
                "url": site.url("/app-shell/6"),
                "render_js": "always",
                "actions": [{"type": "wait", "ms": 25000}],
            }
        ]
    )
    result = crawl(urls=urls, schema=SCHEMA, timeout_per_url=1, retries=0)
    assert result.returncode == 0, result.stderr[-3000:]
    (item,) = store.iter_items(batch_id_from(result))
    assert item["error"]["code"] == "TIMEOUT", item["error"]
    assert "did not finish" in item["error"]["message"]
    assert item["duration_ms"] < 20000


def browser_pids(pid: int) -> set[int]:
    return {child for child in descendants(pid) if "chrom" in comm(child)}


def wait_for_browsers(pid: int, exclude: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = browser_pids(pid) - exclude
        if found:
            return found
        time.sleep(0.1)
    return set()


def test_killed_browser_is_restarted_and_items_retried(
    mongo_uri: str, batch_home: Path, site: ExampleSite, store: BatchStore
):
    urls = [site.url(f"/slow?delay=0.4&n={n}") for n in range(24)]
    command = [
        sys.executable,
        "-m",
        "scrapy",
        "crawl",
        "batch",
        "-a",
        "urls=" + ",".join(urls),
        "-a",
        f"schema={SCHEMA}",
        "-a",
        "render_js=always",
        "-a",
        "retries=3",
        "-a",
        "concurrency=4",
        "-s",
        "BATCH_ALLOWED_NETWORKS=127.0.0.0/8",
    ]
    env = {**os.environ, "MONGO_URI": mongo_uri, "BATCHSCRAPER_HOME": str(batch_home)}
    with subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True) as crawl:
        killed = wait_for_browsers(crawl.pid, set(), 60)
        assert killed, "no Chromium started"
        time.sleep(1.0)  # pages in flight
        for pid in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        restarted = wait_for_browsers(crawl.pid, killed, 60)
        _, stderr = crawl.communicate(timeout=180)
    assert crawl.returncode == 0, stderr[-3000:]
    assert restarted, "the browser was not restarted"
    result = subprocess.CompletedProcess([], 0, "", stderr)
    items = list(store.iter_items(batch_id_from(result)))
    assert [item["status"] for item in items] == ["completed"] * 24, [
        item.get("error") for item in items if item["status"] != "completed"
    ]
    batch = store.get_batch(items[0]["batch_id"])
    assert batch["counters"]["completed"] == 24 and batch["status"] == "completed"


def test_a_crawl_that_renders_nothing_starts_no_browser_driver(
    mongo_uri: str, batch_home: Path, site: ExampleSite, store: BatchStore, tmp_path: Path
):
    """No Playwright driver (Node) nor Chromium runs unless a page is rendered.

    scrapy-playwright starts its driver when the engine starts, and every crawl's first
    request waited for it (about a second); it now starts with the first page to render.
    """
    before = site.hits("/slow")
    urls = [site.url("/slow?delay=3"), site.url("/app-shell/3")]
    command = [sys.executable, "-m", "scrapy", "crawl", "batch", "-a", "urls=" + ",".join(urls),
               "-a", f"schema={SCHEMA}", "-a", "render_js=never", "-a", "retries=0",
               "-s", "BATCH_ALLOWED_NETWORKS=127.0.0.0/8", "-s", "BATCH_CRAWL_EXIT_BY_STATUS=0"]
    env = {**os.environ, "MONGO_URI": mongo_uri, "BATCHSCRAPER_HOME": str(batch_home)}
    log = tmp_path / "crawl.log"
    seen: set[str] = set()
    with log.open("w") as out, subprocess.Popen(command, cwd=REPO, env=env, stderr=out) as crawl:
        deadline = time.monotonic() + 120
        while site.hits("/slow") == before:  # the crawl has started fetching
            assert time.monotonic() < deadline and crawl.poll() is None, "no request came"
            time.sleep(0.05)
        while crawl.poll() is None and time.monotonic() < deadline:
            seen |= {comm(child) for child in descendants(crawl.pid)}
            time.sleep(0.1)
    stderr = log.read_text()
    assert crawl.returncode == 0, stderr[-3000:]
    # the driver's process calls itself node-MainThread
    assert not [name for name in seen if name.startswith("node") or "chrom" in name], seen
    items = list(store.iter_items(batch_id_from(subprocess.CompletedProcess([], 0, "", stderr))))
    assert [item["render_mode"] for item in items] == ["fetch", "fetch"]
    assert items[0]["status"] == "completed"
