"""Crash recovery: a killed crawl, a killed Scrapyd, a restarted MongoDB lose and double nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from batchscraper.demo.site import ExampleSite
from batchscraper.inputs import parse_batch
from batchscraper.store import BatchStore, utcnow
from batchscraper.store.mongo import connect
from tests.api_fixtures import ScrapydServer, free_port
from tests.faults.conftest import (
    PRODUCT_SCHEMA,
    assert_exact,
    assert_products,
    background_crawl,
    new_batch,
    run_crawl,
    slow_products,
    start_fault_scrapyd,
    wait_until,
)

pytestmark = pytest.mark.slow

# leases of a dead worker expire after 3 s; claims are small so a kill leaves some behind
FAST_LEASES = {"BATCH_LEASE_SECONDS": 3, "BATCH_CLAIM_CHUNK": 4}
OUTAGE_SECONDS = 2.0  # how long MongoDB stays down


def _counter(store: BatchStore, batch_id: str, name: str) -> int:
    return int(store.get_batch(batch_id)["counters"][name])


def _leases_expired(store: BatchStore, batch_id: str) -> bool:
    live = {"batch_id": batch_id, "status": {"$in": ["leased", "running"]},
            "lease.until": {"$gt": utcnow()}}
    return store.items.find_one(live) is None


def test_kill_9_mid_batch_then_rerun_stores_every_url_once(
    store: BatchStore, mongo_uri: str, batch_home: Path, site: ExampleSite, tmp_path: Path
) -> None:
    urls = slow_products(site, 40)
    batch_id = new_batch(store, urls, concurrency=4, retries=0)
    with background_crawl(mongo_uri, batch_home, tmp_path / "first.log", batch_id=batch_id,
                          settings=FAST_LEASES) as first:
        wait_until(lambda: _counter(store, batch_id, "completed") >= 8, 60, "some records")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    killed = store.get_batch(batch_id)
    assert killed["status"] == "running"
    # leases the dead worker still holds
    assert killed["counters"]["leased"] + killed["counters"]["running"] > 0
    before = {item["index"]: item["finished_at"] for item in store.iter_items(batch_id)
              if item["status"] == "completed"}

    wait_until(lambda: _leases_expired(store, batch_id), 30, "the dead worker's leases")
    result = run_crawl(mongo_uri, batch_home, batch_id=batch_id, settings=FAST_LEASES)
    assert result.returncode == 0, result.stderr[-3000:]

    batch = assert_exact(store, batch_id, len(urls))
    assert batch["status"] == "completed"
    assert batch["counters"]["completed"] == len(urls)
    items = assert_products(store, batch_id)
    for item in items:  # records written before the kill were not written again
        if item["index"] in before:
            assert item["finished_at"] == before[item["index"]]
    reclaimed = [item for item in items if item["index"] not in before and item["attempts"] > 1]
    assert reclaimed  # the dead worker's items were taken over
    for url in urls:  # at-least-once fetch
        assert site.hits(url.split("?")[0].replace(site.base_url, "")) >= 1


def _submit(server: ScrapydServer, urls: list[str], **options: Any) -> str:
    options = {"retries": 0, "render_js": "never", **options}
    body = {"urls": urls, "schema": PRODUCT_SCHEMA, "options": options}
    answer = server.call("POST", "/batches", body, owner=None)
    assert answer.status == 202, answer.body
    return str(answer.json()["batch_id"])


def _jobs(server: ScrapydServer) -> dict[str, Any]:
    answer = server.call("GET", "/listjobs.json?project=batchscraper", owner=None)
    assert answer.status == 200, answer.body
    return dict(answer.json())


def _job_kinds(store: BatchStore, batch_id: str) -> list[str]:
    return [job["kind"] for job in store.get_batch(batch_id)["jobs"]]


def test_reconciler_resumes_a_batch_whose_crawl_was_killed(
    own_store: BatchStore, site: ExampleSite, tmp_path: Path
) -> None:
    server = start_fault_scrapyd(tmp_path / "scrapyd", own_store.uri)  # type: ignore[attr-defined]
    try:
        urls = slow_products(site, 40)
        batch_id = _submit(server, urls, concurrency=4)
        wait_until(lambda: _counter(own_store, batch_id, "completed") >= 5, 60, "some records")
        (running,) = _jobs(server)["running"]
        os.kill(running["pid"], signal.SIGKILL)

        wait_until(lambda: own_store.get_batch(batch_id)["status"] == "completed", 90,
                   f"the batch to finish; log:\n{server.log_tail()}")
    finally:
        server.stop()
    batch = assert_exact(own_store, batch_id, len(urls))
    assert batch["counters"]["completed"] == len(urls)
    assert_products(own_store, batch_id)
    assert _job_kinds(own_store, batch_id) == ["submit", "reconcile"]


def test_scrapyd_restarted_with_queued_and_running_jobs(
    own_store: BatchStore, site: ExampleSite, tmp_path: Path
) -> None:
    """One crawl slot: A runs, B waits in the queue; Scrapyd and A's crawl are SIGKILLed."""
    home = tmp_path / "scrapyd"
    uri = own_store.uri  # type: ignore[attr-defined]
    first = start_fault_scrapyd(home, uri, max_proc=1)
    try:
        running_urls, queued_urls = slow_products(site, 40), slow_products(site, 8, delay=0.05)
        running = _submit(first, running_urls, concurrency=4)
        wait_until(lambda: _counter(own_store, running, "completed") >= 5, 60, "A's records")
        queued = _submit(first, queued_urls)
        wait_until(lambda: _jobs(first)["pending"], 10, "B's job in the queue")
    finally:  # a crash: Scrapyd and its crawl die at once, no shutdown code runs
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=30)
    assert own_store.get_batch(running)["status"] == "running"
    assert own_store.get_batch(queued)["status"] == "pending"

    second = start_fault_scrapyd(home, uri, max_proc=1)
    try:
        for batch_id in (queued, running):
            wait_until(lambda b=batch_id: own_store.get_batch(b)["status"] == "completed", 120,
                       f"batch {batch_id}; log:\n{second.log_tail()}")
    finally:
        second.stop()
    for batch_id, urls in ((running, running_urls), (queued, queued_urls)):
        batch = assert_exact(own_store, batch_id, len(urls))
        assert batch["counters"]["completed"] == len(urls)
        assert_products(own_store, batch_id)
    assert _job_kinds(own_store, queued) == ["submit"]  # it ran from Scrapyd's own queue
    assert _job_kinds(own_store, running) == ["submit", "reconcile"]


def _start_mongo(port: int, data: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port),
             "--storage-path", str(data), "--log-level", "WARNING"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    client = connect(f"mongodb://127.0.0.1:{port}/?directConnection=true")
    try:
        wait_until(lambda: _pings(client) or process.poll() is not None, 30, "MongoDB")
        assert process.poll() is None, log.read_text()[-2000:]
    except BaseException:
        process.kill()
        process.wait(timeout=30)
        raise
    finally:
        client.close()
    return process


def _pings(client: Any) -> bool:
    try:
        client.admin.command("ping")
    except Exception:
        return False
    return True


def test_mongodb_restarted_mid_batch_loses_nothing(
    site: ExampleSite, batch_home: Path, tmp_path: Path
) -> None:
    port = free_port()
    uri = f"mongodb://127.0.0.1:{port}/restart?directConnection=true"
    data, log = tmp_path / "db", tmp_path / "mongo.log"
    mongo = _start_mongo(port, data, log)
    store = BatchStore(connect(uri), "restart")
    try:
        store.ensure_indexes()
        urls = slow_products(site, 40)
        batch_id = new_batch(store, urls, concurrency=4, retries=0)
        with background_crawl(uri, batch_home, tmp_path / "crawl.log", batch_id=batch_id,
                              settings=FAST_LEASES) as crawl:
            wait_until(lambda: _counter(store, batch_id, "completed") >= 8, 60, "some records")
            mongo.kill()  # SIGKILL: no shutdown code runs
            mongo.wait(timeout=30)
            time.sleep(OUTAGE_SECONDS)
            mongo = _start_mongo(port, data, log)
            assert crawl.wait(timeout=120) == 0, (tmp_path / "crawl.log").read_text()[-3000:]
        batch = assert_exact(store, batch_id, len(urls))
        assert batch["status"] == "completed"
        assert_products(store, batch_id)
    finally:
        store.client.close()
        mongo.kill()
        mongo.wait(timeout=30)


def test_reconciler_finalizes_or_gives_up_on_abandoned_batches(
    own_store: BatchStore, tmp_path: Path
) -> None:
    """A batch whose worker died after its last record gets its final status; one that
    used up its resumes has its unfinished items failed with WORKER_LOST."""
    urls = [f"https://example.com/{n}" for n in range(3)]
    extra = {"source": "api", "jobs": [{"id": "lost-1", "kind": "reconcile"}]}
    spec = parse_batch(urls, PRODUCT_SCHEMA)
    exhausted = own_store.create_batch(spec, extra=extra)["_id"]
    own_store.mark_running(exhausted)
    own_store.claim(exhausted, "dead-worker", range(1), 0)  # a lease that already expired
    finished = own_store.create_batch(spec, extra={"source": "api", "jobs": []})["_id"]
    own_store.mark_running(finished)
    own_store.claim(finished, "dead-worker", range(3), 60)
    own_store.finish_items([{"batch_id": finished, "index": n, "url": url, "status": "completed",
                             "data": {"name": "x", "sku": "y"}} for n, url in enumerate(urls)])
    assert own_store.get_batch(finished)["status"] == "running"

    server = start_fault_scrapyd(tmp_path / "scrapyd", own_store.uri,  # type: ignore[attr-defined]
                                 batch_reconcile_max_resumes="1")
    try:
        for batch_id in (exhausted, finished):
            wait_until(lambda b=batch_id: own_store.get_batch(b)["status"] != "running", 30,
                       f"the reconciler; log:\n{server.log_tail()}")
    finally:
        server.stop()
    assert own_store.get_batch(finished)["status"] == "completed"
    batch = assert_exact(own_store, exhausted, len(urls))
    assert batch["status"] == "failed"
    assert {item["error"]["code"] for item in own_store.iter_items(exhausted)} == {"WORKER_LOST"}
    assert _job_kinds(own_store, exhausted) == ["reconcile"]  # no further resume
