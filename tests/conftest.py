"""Shared fixtures: the embedded MongoDB-wire server, the local site, and a crawl runner.

Everything is real: a secantusdb server on 127.0.0.1, pymongo, the example
site over HTTP, and ``scrapy crawl batch`` run as a subprocess.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchscraper.store import BatchStore
from batchscraper.store.mongo import (
    connect,
    database_name,
    ensure_embedded_server,
    stop_embedded_server,
)
from tests.hostile_site import HostileSite

# Tests stop servers and crawls with Ctrl-C (SIGINT). A shell that starts pytest in the
# background (`bash .ci/run &`) makes it ignore SIGINT, every child inherits that, and Python
# and Twisted then never install their handlers: the child would sleep through the signal.
signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parents[1]
CRAWL_TIMEOUT = 180


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need the real local LLM run last: on a fresh machine it may still be
    building in the background (started by .ci/setup) while the others run."""
    items.sort(key=lambda item: item.get_closest_marker("llm") is not None)


@pytest.fixture(scope="session")
def batch_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batchscraper-home")


@pytest.fixture(scope="session")
def mongo_uri(batch_home: Path) -> Iterator[str]:
    """The embedded server, started the same way the project starts it."""
    port = ensure_embedded_server(batch_home)
    yield f"mongodb://127.0.0.1:{port}/batchscraper_tests?directConnection=true"
    stop_embedded_server(batch_home)


@pytest.fixture(scope="session")
def store(mongo_uri: str) -> Iterator[BatchStore]:
    batch_store = BatchStore(connect(mongo_uri), database_name(mongo_uri))
    batch_store.ensure_indexes()
    yield batch_store
    batch_store.client.close()


@pytest.fixture(scope="session")
def site() -> Iterator[HostileSite]:
    """The example shop, with the hostile pages of tests/hostile_site.py."""
    with HostileSite() as running:
        yield running


@pytest.fixture()
def crawl(mongo_uri: str, batch_home: Path, tmp_path: Path):
    """Run ``scrapy crawl batch`` with the given ``-a`` arguments; returns the process result."""

    def run(
        *, settings: dict[str, Any] | None = None, timeout: float = CRAWL_TIMEOUT, **args: Any
    ) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "scrapy", "crawl", "batch"]
        for key, value in args.items():
            command += ["-a", f"{key}={value}"]
        # Scrapy's usual exit 0 once the crawl ran: these tests judge a crawl by what it stored;
        # tests/test_first_crawl.py checks the exit codes by batch status
        defaults = {"BATCH_PROGRESS_INTERVAL": 1, "BATCH_ALLOWED_NETWORKS": "127.0.0.0/8",
                    "BATCH_CRAWL_EXIT_BY_STATUS": False}
        for key, value in {**defaults, **(settings or {})}.items():
            command += ["-s", f"{key}={value}"]
        env = {**os.environ, "MONGO_URI": mongo_uri, "BATCHSCRAPER_HOME": str(batch_home)}
        return subprocess.run(
            command,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def assert_counters_match_items(store: BatchStore, batch_id: str) -> dict[str, Any]:
    """The batch's counters, and its failures per error code, equal a recount over its items."""
    batch = store.get_batch(batch_id)
    aggregate = store.aggregate_counters(batch_id)
    for status in ("pending", "leased", "running", "completed", "failed", "cancelled", "total"):
        assert batch["counters"][status] == aggregate[status], (status, batch["counters"])
    failures = {code: n for code, n in (batch.get("failures") or {}).items() if n}
    assert failures == store.aggregate_failures(batch_id), failures
    return batch


def batch_id_from(result: subprocess.CompletedProcess[str]) -> str:
    """The batch id a crawl created, from its log."""
    for line in result.stderr.splitlines():
        if "Created batch b_" in line:
            return line.split("Created batch ", 1)[1].split()[0]
    raise AssertionError(f"no batch created; stderr:\n{result.stderr[-3000:]}")
