"""Peak RSS of one spider process for batches of 1,000, 10,000 and 50,000 URLs.

The spider never holds a batch's URL list: it leases items in chunks of
``BATCH_CLAIM_CHUNK`` and waits for room before leasing more, so its memory
should not grow with the batch. Target: the 50,000-URL peak within 1.2x of the
1,000-URL peak (the baseline, measured in the same run).

Each size is a stored batch of the local example site's product pages (half
JSON-LD, half OpenGraph), crawled by ``scrapy crawl batch -a batch_id=...``
with the deterministic extraction path; RSS of the crawl process is sampled
every 0.2 s.

    python bench/memory.py [--sizes 1000,10000,50000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchscraper.demo.site import ExampleSite
from batchscraper.inputs import Limits, parse_batch
from batchscraper.store import BatchStore
from bench._common import bench_store, http_crawl_settings, mb, record, run_crawl
from bench.throughput import SCHEMA, elapsed

TARGET = 1.2


def crawl_batch(
    store: BatchStore, site: ExampleSite, uri: str, size: int, concurrency: int
) -> dict[str, float]:
    """Store a batch of ``size`` URLs, crawl it in one process; its figures."""
    urls = [site.url(f"/{'products' if n % 2 else 'plain'}/{n}") for n in range(1, size + 1)]
    spec = parse_batch(
        urls,
        SCHEMA,
        options={"concurrency": concurrency, "render_js": "never"},
        limits=Limits(max_urls=size),
    )
    batch_id = store.create_batch(spec)["_id"]
    del urls, spec
    started = time.monotonic()
    result, memory = run_crawl({"batch_id": batch_id}, http_crawl_settings(concurrency),
                               {"MONGO_URI": uri})
    counters = store.get_batch(batch_id)["counters"]
    if counters["completed"] + counters["failed"] != size:
        raise SystemExit(f"batch {batch_id} did not finish: {counters}")
    seconds = elapsed(result.stderr)
    return {
        "urls": size,
        "peak_rss_mb": mb(max(memory.process)),
        "pages_per_s": round(size / seconds, 1),
        "wall_s": round(time.monotonic() - started, 1),
        "completed": counters["completed"],
        "failed": counters["failed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    store, uri = bench_store()
    runs = []
    with ExampleSite() as site:
        for size in sizes:
            figures = crawl_batch(store, site, uri, size, args.concurrency)
            print(
                f"{size:>6} URLs: peak RSS {figures['peak_rss_mb']:.1f} MB, "
                f"{figures['pages_per_s']:.0f} pages/s",
                flush=True,
            )
            runs.append(figures)
    ratio = runs[-1]["peak_rss_mb"] / runs[0]["peak_rss_mb"]
    print(
        f"peak RSS {runs[-1]['urls']} vs {runs[0]['urls']} URLs: {ratio:.2f}x "
        f"(target <= {TARGET})"
    )
    record(
        "memory",
        {"concurrency": args.concurrency, "runs": runs, "ratio": round(ratio, 3)},
    )


if __name__ == "__main__":
    main()
