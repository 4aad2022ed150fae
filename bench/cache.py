"""The fetch cache's effect on a re-run: pages/s and CPU s per 1,000 pages, same run.

Four crawls of the same pages (half with an ETag, half without a validator), each on a
fresh batch of the same owner:

(a) no ``max_age`` (the baseline: every page fetched, nothing kept);
(b) ``max_age`` 3600 on an empty cache (every page fetched and kept: the cost of filling);
(c) the re-run with ``max_age`` 3600 (every page a hit: no request);
(d) the entries made an hour old, ``max_age`` 60 (ETag pages revalidated by a 304, the
    others fetched again).

CPU seconds are the crawl process's (user + system), not the embedded MongoDB's.

    python bench/cache.py [--pages 2000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchscraper.demo.site import ExampleSite
from batchscraper.downloadermiddlewares.pagecache import COLLECTION
from batchscraper.inputs import parse_batch
from batchscraper.store import BatchStore
from bench._common import bench_store, cpu_seconds, http_crawl_settings, record, run_crawl
from bench.throughput import SCHEMA, elapsed


def crawl(store: BatchStore, uri: str, urls: list[str], concurrency: int,
          max_age: int) -> dict[str, Any]:
    """One crawl of a fresh batch: pages/s, CPU s per 1,000 pages, its cache counters."""
    options = {"concurrency": concurrency, "render_js": "never", "max_age": max_age}
    batch_id = store.create_batch(parse_batch(urls, SCHEMA, options=options))["_id"]
    cpu = cpu_seconds()
    result, _ = run_crawl(
        {"batch_id": batch_id},
        http_crawl_settings(concurrency),
        {"MONGO_URI": uri},
    )
    cpu = cpu_seconds() - cpu
    counters = store.get_batch(batch_id)["counters"]
    seconds = elapsed(result.stderr)
    return {
        "max_age": max_age,
        "pages_per_s": round(len(urls) / seconds, 1),
        "cpu_s_per_1000": round(cpu / len(urls) * 1000, 2),
        "completed": counters["completed"],
        "cache_hits": counters["cache_hits"],
        "cache_revalidated": counters["cache_revalidated"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    store, uri = bench_store()
    for name in (COLLECTION, f"{COLLECTION}.files", f"{COLLECTION}.chunks"):
        store.db[name].drop()
    with ExampleSite() as site:
        urls = [site.url(f"/{'etag' if n % 2 else 'products'}/{n}")
                for n in range(1, args.pages + 1)]
        runs = {"no_max_age": crawl(store, uri, urls, args.concurrency, 0),
                "filling": crawl(store, uri, urls, args.concurrency, 3600),
                "rerun_hits": crawl(store, uri, urls, args.concurrency, 3600)}
        old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        store.db[COLLECTION].update_many({}, {"$set": {"fetched_at": old}})
        runs["rerun_revalidate"] = crawl(store, uri, urls, args.concurrency, 60)
    base = runs["no_max_age"]["pages_per_s"]
    for name, figures in runs.items():
        print(f"{name:17} {figures['pages_per_s']:7.0f} pages/s  ratio "
              f"{figures['pages_per_s'] / base:5.2f}  {figures['cpu_s_per_1000']:5.2f} CPU s/1000"
              f"  hits {figures['cache_hits']}  revalidated {figures['cache_revalidated']}")
    record("cache", {"pages": args.pages, "concurrency": args.concurrency, **runs,
                     "rerun_ratio": round(runs["rerun_hits"]["pages_per_s"] / base, 3)})


if __name__ == "__main__":
    main()
