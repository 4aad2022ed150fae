"""Two Scrapyd nodes sharing one MongoDB work one batch; one of them dies half-way.

Node A serves the API with ``BATCH_API_NODES = ["local", <node B>]``, so a
batch with ``parallel_jobs: 2`` gets one job on each node (B through its
``schedule.json``, with basic auth). Leases are short (``BATCH_LEASE_SECONDS``
= 3) so that the items B held when it was killed expire quickly and A's job,
which waits for them, takes them over.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchscraper.api.config import node_list
from batchscraper.api.nodes import ScrapydNode, parse_nodes
from batchscraper.demo.site import ExampleSite
from batchscraper.store import BatchStore
from tests.api_fixtures import (
    JOB_SETTINGS,
    SCRAPYD_PASSWORD,
    SCRAPYD_USER,
    ScrapydServer,
    start_scrapyd,
    wait_for,
)

LEASE_SECONDS = 3
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


@pytest.fixture(name="nodes")
def nodes_fixture(
    mongo_uri: str, tmp_path: Path
) -> Iterator[tuple[ScrapydServer, ScrapydServer]]:
    """Node B (a plain Scrapyd with the project), then node A whose API schedules onto both."""
    # schedule.json lists the project's spiders with `scrapyd.runner list`, which finds the
    # settings of a project run from its directory (not deployed as an egg) through this
    node_b = start_scrapyd(
        tmp_path / "node-b", mongo_uri,
        extra_env={"SCRAPY_SETTINGS_MODULE": "batchscraper.settings"},
    )
    b_url = node_b.url.replace("://", f"://{SCRAPYD_USER}:{SCRAPYD_PASSWORD}@")
    job_settings = {
        **JOB_SETTINGS,
        "BATCH_LEASE_SECONDS": str(LEASE_SECONDS),
        "BATCH_CLAIM_CHUNK": "4",  # small leases, so both jobs get a share of a small batch
    }
    try:
        node_a = start_scrapyd(
            tmp_path / "node-a",
            mongo_uri,
            api_settings={
                "batch_api_nodes": json.dumps(["local", b_url]),
                "batch_api_node_poll_interval": "0.5",
                "batch_api_job_settings": json.dumps(job_settings),
            },
        )
    except BaseException:
        node_b.stop()
        raise
    yield node_a, node_b
    node_a.stop()
    node_b.stop()


def submit(node: ScrapydServer, urls: list[str], concurrency: int) -> dict[str, Any]:
    body = {
        "urls": urls,
        "schema": SCHEMA,
        "options": {"parallel_jobs": 2, "concurrency": concurrency, "render_js": "never"},
    }
    answer = node.call("POST", "/batches", body)
    assert answer.status == 202, answer.body
    return dict(answer.json())


def job_ids(node: ScrapydServer, *states: str) -> set[str]:
    jobs = node.listjobs()
    return {job["id"] for state in states for job in jobs[state]}


def final(store: BatchStore, batch_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        batch = store.get_batch(batch_id)
        return batch if batch["status"] in ("completed", "partial", "failed") else None

    return dict(wait_for(finished, timeout=120, what=f"batch {batch_id} to finish"))


def assert_exact(store: BatchStore, batch: dict[str, Any], total: int) -> None:
    counters = batch["counters"]
    assert batch["status"] == "completed", counters
    assert counters["completed"] == total
    assert counters["records_extracted"] == total
    recount = store.aggregate_counters(batch["_id"])
    assert {k: counters[k] for k in recount} == recount


@pytest.mark.slow
def test_two_nodes_share_one_batch(
    nodes: tuple[ScrapydServer, ScrapydServer], store: BatchStore, site: ExampleSite
) -> None:
    node_a, node_b = nodes
    urls = [site.url(f"/products/{n}") for n in range(1, 25)]
    answer = submit(node_a, urls, concurrency=4)
    first, second = answer["jobs"]
    batch = final(store, answer["batch_id"])
    assert_exact(store, batch, len(urls))
    # one job ran on each node
    wait_for(lambda: first in job_ids(node_a, "finished"), timeout=30, what="A's job")
    wait_for(lambda: second in job_ids(node_b, "finished"), timeout=30, what="B's job")
    assert second not in job_ids(node_a, "pending", "running", "finished")


@pytest.mark.slow
def test_node_dies_mid_batch_the_other_finishes(
    nodes: tuple[ScrapydServer, ScrapydServer], store: BatchStore, site: ExampleSite
) -> None:
    node_a, node_b = nodes
    urls = [site.url(f"/slow?delay=0.2&n={n}") for n in range(40)]
    answer = submit(node_a, urls, concurrency=2)
    batch_id, b_job = answer["batch_id"], answer["jobs"][1]

    def b_crawl_pid() -> int | None:
        running = [job for job in node_b.listjobs()["running"] if job["id"] == b_job]
        return int(running[0]["pid"]) if running else None

    pid = wait_for(b_crawl_pid, timeout=60, what="B's crawl process")

    def b_holds_items() -> bool:
        held = store.items.count_documents(
            {"batch_id": batch_id, "status": {"$in": ["leased", "running"]},
             "lease.worker": {"$regex": f":{pid}:"}}
        )
        done = store.get_batch(batch_id)["counters"]["completed"]
        return held > 0 and done >= 4

    wait_for(b_holds_items, timeout=60, interval=0.1, what="B to hold leased items")
    os.kill(pid, signal.SIGKILL)  # the crawl dies without releasing its leases...
    os.killpg(node_b.process.pid, signal.SIGKILL)  # ...and so does its node
    node_b.process.wait(timeout=10)
    orphaned = store.items.count_documents(
        {"batch_id": batch_id, "status": {"$in": ["leased", "running"]},
             "lease.worker": {"$regex": f":{pid}:"}}
    )
    assert orphaned > 0

    batch = final(store, batch_id)
    assert_exact(store, batch, len(urls))
    # B's orphaned items were leased a second time and finished by A
    retaken = store.items.count_documents({"batch_id": batch_id, "attempts": {"$gte": 2}})
    assert retaken >= orphaned


def test_node_list_forms() -> None:
    assert node_list('["local", "http://a:6800"]') == ["local", "http://a:6800"]
    assert node_list("local, http://a:6800") == ["local", "http://a:6800"]
    assert node_list([]) == [] and node_list("") == []
    assert parse_nodes([]) == [None]  # this Scrapyd only
    local, remote = parse_nodes(["LOCAL", "http://admin:s3cret@10.0.0.3:6800/"])
    assert local is None
    assert remote == ScrapydNode("http://10.0.0.3:6800", b"Basic YWRtaW46czNjcmV0")
    with pytest.raises(ValueError, match="BATCH_API_NODES"):
        parse_nodes(["ftp://10.0.0.3"])
