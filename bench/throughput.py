"""Pages/s and CPU per page of the batch spider vs a bare Scrapy spider, same pages, same run.

(a) ``bench/bare_spider.py``: Scrapy only fetches (no parsing, no storage).
(b) ``scrapy crawl batch``: fetch, structured-data extraction, validation, MongoDB
    storage with counters (the deterministic path; no LLM, no browser).

Pages are realistic product pages (30-70 KB) of the local example site: with
JSON-LD (``--kind jsonld``, the default) or half JSON-LD, half OpenGraph only
(``--kind mixed``). Both runs are timed by Scrapy's own ``elapsed_time_seconds``.
CPU ms per page is printed for every process of each side (the crawl, the
MongoDB server, the example site): the figure a busy machine disturbs least.
``--load N`` runs N busy-loop processes beside both sides, so the effect of a
busy machine is measured rather than suffered.

    python bench/throughput.py [--pages 2000] [--concurrency 16] [--kind jsonld|mixed]
        [--load N] [--variant NAME=VALUE[,NAME=VALUE...]]...

Each ``--variant`` runs the batch spider once more with those Scrapy settings
(e.g. ``BATCH_BREAKER_ENABLED=False``), to measure a component's cost in the
same run.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchscraper.demo.site import ExampleSite
from batchscraper.inputs import parse_batch
from batchscraper.store import BatchStore
from bench._common import (
    CPU,
    REPO,
    BusyLoad,
    bench_store,
    compiled,
    http_crawl_settings,
    mb,
    mongo_server_pid,
    record,
    run_crawl,
)

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "price": {"type": "number"},
        "sku": {"type": "string"},
    },
    "required": ["name"],
}
ELAPSED = re.compile(r"'elapsed_time_seconds': ([0-9.]+)")


def elapsed(stderr: str) -> float:
    found = ELAPSED.search(stderr)
    if not found:
        raise SystemExit(f"no elapsed_time_seconds in the log:\n{stderr[-3000:]}")
    return float(found.group(1))


def bare_scrapy(urls: list[str], concurrency: int) -> float:
    compiled(REPO)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(urls))
    command = [
        sys.executable,
        "-m",
        "scrapy",
        "runspider",
        str(REPO / "bench" / "bare_spider.py"),
        "-a",
        f"urls_file={handle.name}",
        "-s",
        f"CONCURRENT_REQUESTS={concurrency}",
        "-s",
        f"CONCURRENT_REQUESTS_PER_DOMAIN={concurrency}",
        "-s",
        "LOG_LEVEL=INFO",
    ]
    # outside the project, so none of its settings apply
    result = subprocess.run(
        command,
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "SCRAPY_SETTINGS_MODULE"},
    )
    os.unlink(handle.name)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return elapsed(result.stderr)


def spider_run(
    store: BatchStore, urls: list[str], concurrency: int, uri: str, extra: dict[str, str]
) -> tuple[float, dict[str, Any], float, dict[str, float]]:
    """The batch spider on a fresh batch of ``urls``: seconds, counters, peak RSS (MB), CPU."""
    spec = parse_batch(urls, SCHEMA, options={"concurrency": concurrency, "render_js": "never"})
    batch_id = store.create_batch(spec)["_id"]
    with CPU(mongo_server_pid()) as cpu:
        result, memory = run_crawl({"batch_id": batch_id},
                                   http_crawl_settings(concurrency, **extra), {"MONGO_URI": uri})
    counters = store.get_batch(batch_id)["counters"]
    recount = store.aggregate_counters(batch_id)
    if {key: counters[key] for key in recount} != recount:
        raise SystemExit(f"counters are off: {counters} vs {recount}")
    return elapsed(result.stderr), counters, mb(max(memory.process)), cpu.per_page(len(urls))


def variant(text: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in text.split(","))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--kind", choices=("jsonld", "mixed"), default="jsonld")
    parser.add_argument("--load", type=int, default=0, help="busy-loop processes beside both")
    parser.add_argument("--variant", type=variant, action="append", default=[])
    args = parser.parse_args()
    store, uri = bench_store()
    with ExampleSite() as site, BusyLoad(args.load):
        urls = [
            site.url(f"/{'products' if args.kind == 'jsonld' or n % 2 else 'plain'}/{n}")
            for n in range(1, args.pages + 1)
        ]
        # not measured: the first crawl of a run costs more (the MongoDB server's storage
        # growing, caches filling), which would count against whichever side comes first
        spider_run(store, urls[: max(100, args.pages // 10)], args.concurrency, uri, {})
        with CPU(None) as bare_cpu:
            bare_seconds = bare_scrapy(urls, args.concurrency)
        spider_seconds, counters, peak, cpu = spider_run(store, urls, args.concurrency, uri, {})
        variants = [
            (extra, spider_run(store, urls, args.concurrency, uri, extra))
            for extra in args.variant
        ]
    bare_rate, spider_rate = args.pages / bare_seconds, args.pages / spider_seconds
    bare = bare_cpu.per_page(args.pages)
    print(
        f"bare Scrapy: {bare_rate:.0f} pages/s   batch spider: {spider_rate:.0f} pages/s   "
        f"ratio {spider_rate / bare_rate:.2f} (target >= {0.8 if args.load else 0.9})"
    )
    print(f"CPU ms/page  bare Scrapy: crawl {bare['crawl_cpu_ms_per_page']}, site "
          f"{bare['site_cpu_ms_per_page']}   batch spider: crawl {cpu['crawl_cpu_ms_per_page']}"
          f" (target <= 3.0), MongoDB {cpu['mongodb_cpu_ms_per_page']} (target <= 1.0), site "
          f"{cpu['site_cpu_ms_per_page']}")
    variant_figures = []
    for extra, (seconds, _, _, variant_cpu) in variants:
        rate = args.pages / seconds
        print(f"  with {extra}: {rate:.0f} pages/s   ratio {rate / bare_rate:.2f}   CPU ms/page "
              f"crawl {variant_cpu['crawl_cpu_ms_per_page']}, MongoDB "
              f"{variant_cpu['mongodb_cpu_ms_per_page']}")
        variant_figures.append({"settings": extra, "pages_per_s": round(rate, 1),
                                "ratio": round(rate / bare_rate, 3), **variant_cpu})
    record(
        "throughput",
        {
            "pages": args.pages,
            "kind": args.kind,
            "load": args.load,
            "concurrency": args.concurrency,
            "bare_pages_per_s": round(bare_rate, 1),
            "spider_pages_per_s": round(spider_rate, 1),
            "ratio": round(spider_rate / bare_rate, 3),
            "bare": {key: bare[key] for key in ("crawl_cpu_ms_per_page", "site_cpu_ms_per_page")},
            "spider": cpu,
            "completed": counters["completed"],
            "failed": counters["failed"],
            "spider_peak_rss_mb": peak,
            **({"variants": variant_figures} if variant_figures else {}),
        },
    )


if __name__ == "__main__":
    main()
