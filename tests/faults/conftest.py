"""Helpers of the fault-injection suite: crawls that can be killed, Scrapyd that can be restarted.

Every fault is real: processes get SIGKILL, servers are stopped and started
again, pages send the bad bytes. The assertions are on what MongoDB holds
afterwards: each URL stored once, counters equal to the aggregate.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from batchscraper.demo.site import product_expected
from batchscraper.inputs import parse_batch
from batchscraper.store import BatchStore
from batchscraper.store.mongo import connect, database_name
from tests.api_fixtures import ScrapydServer, start_scrapyd, wait_for
from tests.conftest import REPO, assert_counters_match_items
from tests.hostile_site import HostileSite

CRAWL_TIMEOUT = 120
PRODUCT_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "sku": {"type": "string"}},
    "required": ["name", "sku"],
}
# exit 0 once the crawl ran (Scrapy's usual): these tests judge what was stored
DEFAULT_SETTINGS = {"BATCH_PROGRESS_INTERVAL": 0, "BATCH_ALLOWED_NETWORKS": "127.0.0.0/8",
                    "BATCH_CRAWL_EXIT_BY_STATUS": False}


def crawl_command(settings: dict[str, Any] | None = None, **args: Any) -> list[str]:
    """``scrapy crawl batch`` with ``-a`` arguments and ``-s`` settings."""
    command = [sys.executable, "-m", "scrapy", "crawl", "batch"]
    for key, value in args.items():
        command += ["-a", f"{key}={value}"]
    for key, value in {**DEFAULT_SETTINGS, **(settings or {})}.items():
        command += ["-s", f"{key}={value}"]
    return command


def crawl_env(mongo_uri: str, home: Path) -> dict[str, str]:
    return {**os.environ, "MONGO_URI": mongo_uri, "BATCHSCRAPER_HOME": str(home)}


def run_crawl(
    mongo_uri: str, home: Path, *, settings: dict[str, Any] | None = None, **args: Any
) -> subprocess.CompletedProcess[str]:
    """Run a crawl to its end."""
    return subprocess.run(
        crawl_command(settings, **args), cwd=REPO, env=crawl_env(mongo_uri, home),
        capture_output=True, text=True, timeout=CRAWL_TIMEOUT,
    )


@contextlib.contextmanager
def background_crawl(
    mongo_uri: str, home: Path, log: Path, *, settings: dict[str, Any] | None = None,
    **args: Any,
) -> Iterator[subprocess.Popen[bytes]]:
    """A crawl running in the background; SIGKILLed on the way out if still alive."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            crawl_command(settings, **args), cwd=REPO, env=crawl_env(mongo_uri, home),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        yield process
    finally:
        kill_group(process)


def kill_group(process: subprocess.Popen[Any]) -> None:
    """SIGKILL a process and everything it started (its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition()`` every 0.1 s until it returns something truthy; that value."""
    return wait_for(condition, timeout, interval=0.1, what=what)


def assert_exact(store: BatchStore, batch_id: str, total: int) -> dict[str, Any]:
    """Every item finished once, and the batch counters equal the aggregate over its items."""
    batch = assert_counters_match_items(store, batch_id)
    aggregate = store.aggregate_counters(batch_id)
    assert aggregate["total"] == total
    assert aggregate["pending"] == aggregate["leased"] == aggregate["running"] == 0, aggregate
    completed = aggregate["completed"]
    assert batch["counters"]["records_extracted"] == completed, batch["counters"]
    return batch


def new_batch(store: BatchStore, urls: list[str], **options: Any) -> str:
    """A stored batch of ``urls`` (product schema), as the CLI stores one."""
    spec = parse_batch(urls, PRODUCT_SCHEMA, None, {"render_js": "never", **options})
    return str(store.create_batch(spec)["_id"])


def slow_products(site: HostileSite, count: int, delay: float = 0.3) -> list[str]:
    """``count`` product pages that each take ``delay`` seconds to answer."""
    return [site.url(f"/hostile/slow-products/{n}?delay={delay}") for n in range(1, count + 1)]


def assert_products(store: BatchStore, batch_id: str) -> list[dict[str, Any]]:
    """Every item of a ``slow_products`` batch holds its own product's record."""
    items = list(store.iter_items(batch_id))
    for item in items:
        n = int(item["url"].split("/slow-products/")[1].split("?")[0])
        assert item["status"] == "completed", item.get("error")
        assert item["data"]["sku"] == product_expected(n)["sku"]
    return items


@pytest.fixture()
def own_store(mongo_uri: str, request: pytest.FixtureRequest) -> Iterator[BatchStore]:
    """A store in a database of the test's own (so a Scrapyd sees only this test's batches)."""
    # one database per test item (parameters included), so none needs dropping
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:10]
    name = f"faults_{request.node.name.split('[')[0][-30:]}_{digest}"
    uri = mongo_uri.replace(f"/{database_name(mongo_uri)}?", f"/{name}?")
    store = BatchStore(connect(uri), name)
    store.ensure_indexes()
    store.uri = uri  # type: ignore[attr-defined]
    yield store
    # no drop_database: the session's server is thrown away, and dropping a database whose
    # killed crawl left a transaction open can wait on the embedded server for minutes
    store.client.close()


# Scrapyd settings of the fault tests: leases that expire quickly, a reconciler that looks often
FAST_JOB_SETTINGS = {
    "BATCH_ALLOWED_NETWORKS": "127.0.0.0/8",
    "BATCH_PROGRESS_INTERVAL": "0",
    "BATCH_CANCEL_CHECK_INTERVAL": "0.5",
    "BATCH_LEASE_SECONDS": "3",
    "BATCH_CLAIM_CHUNK": "4",
}
FAST_RECONCILE = {
    "batch_reconcile_interval": "0.5",
    "batch_reconcile_grace": "1",
    "batch_api_job_settings": json.dumps(FAST_JOB_SETTINGS),
    "batch_allowed_networks": "127.0.0.0/8",
}


def start_fault_scrapyd(
    home: Path,
    mongo_uri: str,
    *,
    max_proc: int | None = None,
    keys: bool = False,
    env: dict[str, str] | None = None,
    **api: str,
) -> ScrapydServer:
    """Scrapyd on loopback with the fast reconciler; ``max_proc`` caps its crawls.

    The API is open unless ``keys`` (then the API keys and basic auth of
    tests.api_fixtures are on); ``api`` overrides ``[batchscraper]`` settings.
    """
    return start_scrapyd(
        home, mongo_uri, keys=keys, extra_env=env, api_settings={**FAST_RECONCILE, **api},
        max_proc=max_proc,
    )
