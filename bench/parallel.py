"""One batch worked by 1 and by 2 spider processes: pages/s of each, on CPU-bound extraction.

Two processes share a batch through item leases, as two Scrapyd jobs of a
batch with ``parallel_jobs: 2`` do. Extraction is made CPU-bound with
``formats: markdown`` (every page converted to markdown and the markdown
stored: ~17 ms of crawl CPU a page, against ~4 ms without), so one process
is limited by its GIL and a second process can use the second core. The CPU
each side spends per page (crawl processes, MongoDB, the example site, which
all share this machine's cores) is printed with the figures. The same URLs
are stored as a fresh batch for every run; each process count runs
``--rounds`` times, alternating, and the counters are checked against the
items after every run (each item finished exactly once).

    python bench/parallel.py [--pages 1000] [--concurrency 8] [--rounds 2]
        [--formats json,markdown]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchscraper.demo.site import ExampleSite
from batchscraper.inputs import parse_batch
from batchscraper.store import BatchStore
from bench._common import REPO, bench_store, cpu_seconds, mongo_server_pid, record
from bench.throughput import SCHEMA

DISTINCT_PAGES = 200  # the example site caches this many generated pages
STAT = re.compile(r"'batch/items/(completed|failed)': (\d+)")


def run_processes(batch_id: str, count: int, uri: str) -> tuple[float, list[int], float]:
    """``count`` crawl processes on one batch: wall seconds, items each finished, their CPU s."""
    command = [sys.executable, "-m", "scrapy", "crawl", "batch", "-a", f"batch_id={batch_id}"]
    for name, value in {
        "BATCH_ALLOWED_NETWORKS": "127.0.0.0/8",
        "BATCH_BROWSER_ENABLED": False,
        "BATCH_CRAWL_EXIT_BY_STATUS": False,  # the first to end sees the batch still running
        "BATCH_PROGRESS_INTERVAL": 0,
        "LOG_LEVEL": "INFO",
    }.items():
        command += ["-s", f"{name}={value}"]
    env = {**os.environ, "MONGO_URI": uri}
    cpu_before = cpu_seconds()
    started = time.monotonic()
    processes = [
        subprocess.Popen(command, cwd=REPO, env=env, text=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(count)
    ]
    logs = [process.communicate()[1] for process in processes]
    wall = time.monotonic() - started
    for process, log in zip(processes, logs, strict=True):
        if process.returncode != 0:
            raise SystemExit(f"crawl failed:\n{log[-3000:]}")
    shares = [sum(int(n) for _, n in STAT.findall(log)) for log in logs]
    return wall, shares, cpu_seconds() - cpu_before


def one_run(
    store: BatchStore, urls: list[str], count: int, options: dict[str, Any], uri: str,
    server_pid: int,
) -> dict[str, Any]:
    spec = parse_batch(urls, SCHEMA, options={"render_js": "never", **options})
    batch_id = store.create_batch(spec)["_id"]
    server_before, site_before = cpu_seconds(server_pid), cpu_seconds(os.getpid())
    wall, shares, crawl_cpu = run_processes(batch_id, count, uri)
    server_cpu = cpu_seconds(server_pid) - server_before
    site_cpu = cpu_seconds(os.getpid()) - site_before  # the example site's threads
    counters = store.get_batch(batch_id)["counters"]
    recount = store.aggregate_counters(batch_id)
    exact = {key: counters[key] for key in recount} == recount
    done = counters["completed"] + counters["failed"]
    if not exact or done != len(urls) or sum(shares) != len(urls):
        raise SystemExit(f"counters are off: {counters} vs {recount}, shares {shares}")
    return {
        "processes": count,
        "wall_s": round(wall, 2),
        "pages_per_s": round(len(urls) / wall, 1),
        "items_per_process": shares,
        "crawl_cpu_ms_per_page": round(crawl_cpu * 1000 / len(urls), 1),
        "mongodb_cpu_ms_per_page": round(server_cpu * 1000 / len(urls), 1),
        "site_cpu_ms_per_page": round(site_cpu * 1000 / len(urls), 1),
        "completed": counters["completed"],
        "counters_exact": exact,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--formats", default="json,markdown")
    args = parser.parse_args()
    options = {"concurrency": args.concurrency, "formats": args.formats.split(",")}
    store, uri = bench_store()
    server_pid = mongo_server_pid()
    runs = []
    with ExampleSite() as site:
        urls = [
            site.url(f"/{'products' if n % 2 else 'plain'}/{n % DISTINCT_PAGES + 1}?v={n}")
            for n in range(args.pages)
        ]
        for _ in range(args.rounds):
            for count in (1, 2):
                figures = one_run(store, urls, count, options, uri, server_pid)
                print(
                    f"{count} process(es): {figures['pages_per_s']:.1f} pages/s "
                    f"({figures['wall_s']:.1f} s, items per process "
                    f"{figures['items_per_process']}; CPU ms/page: crawls "
                    f"{figures['crawl_cpu_ms_per_page']}, MongoDB "
                    f"{figures['mongodb_cpu_ms_per_page']}, site "
                    f"{figures['site_cpu_ms_per_page']})",
                    flush=True,
                )
                runs.append(figures)
    rate = {count: [r["pages_per_s"] for r in runs if r["processes"] == count] for count in (1, 2)}
    ratios = [two / one for one, two in zip(rate[1], rate[2], strict=True)]
    print(f"2 processes vs 1: {', '.join(f'{r:.2f}x' for r in ratios)} (target > 1)")
    record(
        "parallel",
        {
            "pages": args.pages,
            "concurrency": args.concurrency,
            "formats": args.formats,
            "runs": runs,
            "ratios": [round(r, 3) for r in ratios],
        },
    )


if __name__ == "__main__":
    main()
