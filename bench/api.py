"""API latency: time to 202 for a 5,000-URL submit; GET /batches/{id} p50/p95 on 10,000 items.

Starts the embedded MongoDB (unless MONGO_URI is set) and ``batchscraper serve``
on a free port, then measures, each against a baseline from the same run:

- submit: ``POST /batches`` with 5,000 URLs until the 202, against storing the
  same batch with ``BatchStore.create_batch`` directly (no HTTP, no parsing);
- polls: ``GET /batches/{id}`` (first items page, and a page deep in the batch)
  of a stored 10,000-item batch, against Scrapyd's own ``GET /daemonstatus.json``.

    .venv/bin/python bench/api.py [--polls 300] [--out bench/results.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from batchscraper.inputs import parse_batch
from batchscraper.mongo import connect, database_name, ensure_embedded_server, stop_embedded_server
from batchscraper.store import BatchStore

REPO = Path(__file__).resolve().parents[1]
SUBMIT_URLS = 5_000
POLL_ITEMS = 10_000
FIELDS = [{"field": "name", "type": "string"}, {"field": "price", "type": "number"}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def call(url: str, method: str = "GET", body: Any = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, response.read()


def timed(url: str, method: str = "GET", body: Any = None) -> float:
    started = time.perf_counter()
    call(url, method, body)
    return (time.perf_counter() - started) * 1000


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1], 2),
    }


def start_scrapyd(home: Path, mongo_uri: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    (home / ".scrapyd.conf").write_text(
        f"[scrapyd]\nhttp_port = {port}\n"
        + "".join(f"{name}_dir = {home / name}\n" for name in ("logs", "dbs", "eggs"))
    )
    env = {**os.environ, "HOME": str(home), "MONGO_URI": mongo_uri, "BATCH_API_KEYS": "",
           "BATCHSCRAPER_HOME": str(home)}
    log = (home / "scrapyd.out").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "batchscraper.cli", "serve"], cwd=REPO,
                               env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            call(url + "/openapi.json")
            return process, url
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Scrapyd did not start; see {home / 'scrapyd.out'}") from None
            time.sleep(0.2)


def wait_idle(url: str) -> None:
    """Until Scrapyd runs no job, so the next measurement has the machine to itself."""
    while True:
        status = json.loads(call(url + "/daemonstatus.json")[1])
        if not status["running"] and not status["pending"]:
            return
        time.sleep(0.2)


def bench_submit(url: str, store: BatchStore, rounds: int) -> dict[str, Any]:
    urls = [f"https://shop.example/products/{n}" for n in range(SUBMIT_URLS)]
    api, direct = [], []
    for _ in range(rounds):
        spec = parse_batch(urls, FIELDS)
        started = time.perf_counter()
        store.create_batch(spec)
        direct.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        status, body = call(url + "/batches", "POST", {"urls": urls, "fields": FIELDS})
        api.append((time.perf_counter() - started) * 1000)
        assert status == 202
        call(f"{url}/batches/{json.loads(body)['batch_id']}", "DELETE")  # no crawl meanwhile
        wait_idle(url)
    return {
        "submit_5000_ms": round(statistics.median(api), 1),
        "baseline_create_batch_ms": round(statistics.median(direct), 1),
        "submit_ratio": round(statistics.median(api) / statistics.median(direct), 2),
    }


def bench_polls(url: str, store: BatchStore, polls: int) -> dict[str, Any]:
    spec = parse_batch([f"https://shop.example/p/{n}" for n in range(POLL_ITEMS)], FIELDS)
    batch_id = store.create_batch(spec)["_id"]
    first = [timed(f"{url}/batches/{batch_id}") for _ in range(polls)]
    deep = [timed(f"{url}/batches/{batch_id}?page=400&limit=20") for _ in range(polls)]
    baseline = [timed(f"{url}/daemonstatus.json") for _ in range(polls)]
    out = {f"poll_{k}": v for k, v in percentiles(first).items()}
    out |= {f"poll_deep_page_{k}": v for k, v in percentiles(deep).items()}
    out |= {f"baseline_daemonstatus_{k}": v for k, v in percentiles(baseline).items()}
    out["poll_p95_ratio"] = round(out["poll_p95_ms"] / out["baseline_daemonstatus_p95_ms"], 2)
    store.cancel_batch(batch_id)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=300)
    parser.add_argument("--submits", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "bench" / "results.jsonl"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        home = Path(tmp)
        own_mongo = not os.environ.get("MONGO_URI")
        uri = os.environ.get("MONGO_URI") or (
            f"mongodb://127.0.0.1:{ensure_embedded_server(home / 'mongo')}/bench_api"
            "?directConnection=true"
        )
        store = BatchStore(connect(uri), database_name(uri))
        store.ensure_indexes()
        process, url = start_scrapyd(home / "scrapyd", uri)
        try:
            result = {"bench": "api", "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                      **bench_submit(url, store, args.submits), **bench_polls(url, store,
                                                                              args.polls)}
        finally:
            os.killpg(process.pid, signal.SIGTERM)  # Scrapyd and any crawl it started
            process.wait(timeout=30)
            store.client.close()
            if own_mongo:
                stop_embedded_server(home / "mongo")
    print(f"submit {SUBMIT_URLS} URLs -> 202: {result['submit_5000_ms']} ms "
          f"(create_batch alone {result['baseline_create_batch_ms']} ms, "
          f"x{result['submit_ratio']})")
    print(f"GET /batches/{{id}} on {POLL_ITEMS} items: p50 {result['poll_p50_ms']} ms, "
          f"p95 {result['poll_p95_ms']} ms (page 400: p95 {result['poll_deep_page_p95_ms']} ms; "
          f"daemonstatus.json p95 {result['baseline_daemonstatus_p95_ms']} ms, "
          f"x{result['poll_p95_ratio']})")
    with open(args.out, "a") as out:
        out.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
