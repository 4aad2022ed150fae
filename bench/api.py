"""API latency: time to 202 for a 5,000-URL submit; GET /batches/{id} p50/p95 on 10,000 items.

Starts the embedded MongoDB (unless MONGO_URI is set) and ``batchscraper serve``
on a free port, then measures, each against a baseline from the same run:

- submit: ``POST /batches`` with 5,000 URLs until the 202, against storing the
  same batch with ``BatchStore.create_batch`` directly (no HTTP, no parsing);
- polls: ``GET /batches/{id}`` (first items page, and a page deep in the batch)
  of a stored 10,000-item batch, against Scrapyd's own ``GET /daemonstatus.json``;
- job start: from the 202 of a one-URL submit to the crawl's first request at a
  local site, p50/p95 over ``--starts`` submits, with where the time goes (Scrapyd
  launching the process, the process until Scrapy logs, until the spider opens,
  until the request), against a bare Scrapy spider started the same way.

    .venv/bin/python bench/api.py [--polls 300] [--starts 20] [--before REV]
                                  [--out bench/results.jsonl]

``--before REV`` also starts a Scrapyd from that revision's files (``git archive``)
and interleaves its job starts with this tree's: a change's before and after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from batchscraper.inputs import parse_batch
from batchscraper.store import BatchStore
from batchscraper.store.mongo import (
    connect,
    database_name,
    ensure_embedded_server,
    stop_embedded_server,
)

REPO = Path(__file__).resolve().parents[1]
SUBMIT_URLS = 5_000
POLL_ITEMS = 10_000
FIELDS = [{"field": "name", "type": "string"}, {"field": "price", "type": "number"}]
FINAL = ("completed", "partial", "failed", "cancelled")
# the crawl's log lines carry their epoch time: where a job's start goes, to the millisecond
# (%% because scrapyd.conf is read with interpolation)
LOG_FORMAT = "%%(created).3f [%%(name)s] %%(levelname)s: %%(message)s"
JOB_SETTINGS = {"BATCH_ALLOWED_NETWORKS": "127.0.0.0/8", "LOG_FORMAT": LOG_FORMAT}
PAGE = (b'<!doctype html><html><head><title>p</title><script type="application/ld+json">'
        b'{"@context": "https://schema.org", "@type": "Product", "name": "P",'
        b' "offers": {"@type": "Offer", "price": "1.00"}}</script></head>'
        b"<body><h1>P</h1></body></html>")


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


def start_scrapyd(
    home: Path, mongo_uri: str, repo: Path = REPO
) -> tuple[subprocess.Popen[bytes], str]:
    """``batchscraper serve`` from the source tree ``repo``, with open API, on a free port."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    (home / ".scrapyd.conf").write_text(
        f"[scrapyd]\nhttp_port = {port}\n"
        + "".join(f"{name}_dir = {home / name}\n" for name in ("logs", "dbs", "eggs"))
        + f"\n[batchscraper]\nbatch_api_job_settings = {json.dumps(JOB_SETTINGS)}\n"
    )
    env = {**os.environ, "HOME": str(home), "MONGO_URI": mongo_uri, "BATCH_API_KEYS": "",
           "BATCHSCRAPER_HOME": str(home), "PYTHONPATH": str(repo)}
    log = (home / "scrapyd.out").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "batchscraper.cli", "serve"], cwd=repo,
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


class Arrivals:
    """A local site that notes when each path is first requested (wall clock: other
    processes' log times are compared with it)."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        arrivals = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                arrivals.first.setdefault(self.path, time.time())
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(PAGE)))
                self.end_headers()
                self.wfile.write(PAGE)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, path: str, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while path not in self.first:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path} was never requested")
            time.sleep(0.005)
        return self.first[path]


def log_times(log: Path) -> tuple[float, float]:
    """A crawl log's first line and its "Spider opened" line, as epoch seconds."""
    first = opened = 0.0
    for line in log.read_text(errors="replace").splitlines():
        stamp = line.split(" ", 1)[0]
        try:
            at = float(stamp)
        except ValueError:
            continue
        first = first or at
        if "Spider opened" in line:
            opened = at
            break
    return first, opened


def spawned_at(url: str, job_id: str) -> float:
    """When Scrapyd spawned the job's process (its listjobs ``start_time``, local time)."""
    jobs = json.loads(call(url + "/listjobs.json?project=batchscraper")[1])
    for job in jobs["running"] + jobs["finished"]:
        if job["id"] == job_id:
            return dt.datetime.fromisoformat(job["start_time"]).timestamp()
    raise RuntimeError(f"Scrapyd does not list job {job_id}")


STAGES = ("total", "launch", "process", "open", "request")


@dataclass(frozen=True)
class Target:
    """A Scrapyd with the batch API, started from a source tree (this one, or ``--before``)."""

    name: str
    url: str
    logs: Path


def one_start(target: Target, site: Arrivals, n: int) -> dict[str, float]:
    """Submit a one-URL batch; ms from its 202 to its first request, and by stage."""
    path = f"/start/{target.name}/{n}?t={time.time()}"
    status, body = call(target.url + "/batches", "POST", {"urls": [site.url + path],
                                                          "fields": FIELDS})
    answered = time.time()
    assert status == 202, body
    answer = json.loads(body)
    requested = site.wait(path)
    while json.loads(call(f"{target.url}/batches/{answer['batch_id']}?limit=0")[1])[
            "status"] not in FINAL:
        time.sleep(0.05)
    wait_idle(target.url)
    job_id = answer["jobs"][0]
    spawned = spawned_at(target.url, job_id)
    logged, opened = log_times(target.logs / "batchscraper" / "batch" / f"{job_id}.log")
    seconds = (requested - answered, spawned - answered, logged - spawned, opened - logged,
               requested - opened)
    return {stage: value * 1000 for stage, value in zip(STAGES, seconds, strict=True)}


def bare_start(site: Arrivals, folder: Path, n: int) -> float:
    """The baseline: a bare Scrapy spider's process, ms from spawn to its first request."""
    path = f"/bare/{n}?t={time.time()}"
    urls = folder / "urls.txt"
    urls.write_text(site.url + path + "\n")
    started = time.time()
    process = subprocess.Popen(
        [sys.executable, "-m", "scrapy", "runspider", str(REPO / "bench" / "bare_spider.py"),
         "-a", f"urls_file={urls}", "-s", "LOG_LEVEL=WARNING"],
        cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    elapsed = (site.wait(path) - started) * 1000
    process.wait(timeout=60)
    return elapsed


def bench_starts(targets: list[Target], site: Arrivals, starts: int) -> dict[str, Any]:
    """Job start latency of each target and of bare Scrapy, their runs interleaved (the
    machine's load falls on each alike)."""
    samples: dict[str, dict[str, list[float]]] = {
        target.name: {stage: [] for stage in STAGES} for target in targets}
    bare: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as tmp:
        for n in range(starts):
            for target in targets:
                for stage, ms in one_start(target, site, n).items():
                    samples[target.name][stage].append(ms)
            bare.append(bare_start(site, Path(tmp), n))
    out = {f"baseline_bare_scrapy_start_{k}": v for k, v in percentiles(bare).items()}
    for name, stages in samples.items():
        prefix = "start" if name == "now" else f"start_{name}"
        out |= {f"{prefix}_{k}": v for k, v in percentiles(stages.pop("total")).items()}
        out |= {f"{prefix}_{stage}_p50_ms": round(statistics.median(values), 1)
                for stage, values in stages.items()}
        out[f"{prefix}_ratio"] = round(out[f"{prefix}_p50_ms"]
                                       / out["baseline_bare_scrapy_start_p50_ms"], 2)
    return out


def source_tree(rev: str, folder: Path) -> Path:
    """The repository's files at ``rev`` (``git archive``), to run Scrapyd from."""
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def start_line(result: dict[str, Any], prefix: str, label: str) -> str:
    return (f"job start {label}, 202 -> first request: p50 {result[f'{prefix}_p50_ms']:.0f} ms, "
            f"p95 {result[f'{prefix}_p95_ms']:.0f} ms (x{result[f'{prefix}_ratio']} bare Scrapy);"
            f" p50 by stage: launch {result[f'{prefix}_launch_p50_ms']:.0f}, process start "
            f"{result[f'{prefix}_process_p50_ms']:.0f}, spider open "
            f"{result[f'{prefix}_open_p50_ms']:.0f}, first request "
            f"{result[f'{prefix}_request_p50_ms']:.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=300)
    parser.add_argument("--submits", type=int, default=3)
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--before", metavar="REV",
                        help="also measure job starts of a Scrapyd run from this git revision")
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
        processes, targets = [], []
        site = Arrivals()
        try:
            trees = [("now", REPO)]
            if args.before:
                trees.append(("before", source_tree(args.before, home / "before-tree")))
            for name, tree in trees:
                process, url = start_scrapyd(home / f"scrapyd-{name}", uri, tree)
                processes.append(process)
                targets.append(Target(name, url, home / f"scrapyd-{name}" / "logs"))
            result = {"bench": "api", "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                      "before": args.before, **bench_starts(targets, site, args.starts),
                      **bench_submit(targets[0].url, store, args.submits),
                      **bench_polls(targets[0].url, store, args.polls)}
        finally:
            site.server.shutdown()
            for process in processes:
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
    print(f"bare Scrapy process -> first request: p50 "
          f"{result['baseline_bare_scrapy_start_p50_ms']:.0f} ms, p95 "
          f"{result['baseline_bare_scrapy_start_p95_ms']:.0f} ms ({args.starts} runs)")
    print(start_line(result, "start", f"({args.starts} submits)"))
    if args.before:
        print(start_line(result, "start_before", f"at {args.before}"))
    with open(args.out, "a") as out:
        out.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
