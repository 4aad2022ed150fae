"""Per-item webhook events and change detection: crawl pages/s with them on vs off, same run.

Crawls of the same pages, each on a fresh batch:

(a) no webhook (the baseline);
(b) ``webhook.events`` with ``item.completed`` and ``item.failed``: one outbox document per
    item, written in the transaction of its record's group;
(c) (b) plus ``item.changed`` and ``compare_to`` (a): each group also reads the previous
    run's records and every item gets a ``change``;
(d) the baseline again (drift between the first and last crawl).

Nothing delivers the events here (no Scrapyd): what is measured is the crawl's cost.

    python bench/events.py [--pages 2000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchscraper.changes import CHANGE_STATUSES
from batchscraper.demo.site import ExampleSite
from batchscraper.inputs import parse_batch
from batchscraper.store import BatchStore
from batchscraper.webhooks import OUTBOX, new_secret
from bench._common import bench_store, http_crawl_settings, record, run_crawl
from bench.throughput import SCHEMA, elapsed

HOOK = "https://hooks.example/batches"


def crawl(store: BatchStore, uri: str, urls: list[str], concurrency: int,
          extra: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """One crawl of a fresh batch; (its id, pages/s and what it wrote)."""
    options = {"concurrency": concurrency, "render_js": "never"}
    batch_id = store.create_batch(parse_batch(urls, SCHEMA, options=options), extra=extra)["_id"]
    result, _ = run_crawl(
        {"batch_id": batch_id},
        http_crawl_settings(concurrency),
        {"MONGO_URI": uri},
    )
    batch = store.get_batch(batch_id)
    return batch_id, {
        "pages_per_s": round(len(urls) / elapsed(result.stderr), 1),
        "completed": batch["counters"]["completed"],
        "events": store.db[OUTBOX].count_documents({"batch_id": batch_id}),
        "changes": {k: n for k, n in (batch.get("changes") or {}).items() if n},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    store, uri = bench_store()
    events = {"url": HOOK, "secret": new_secret(), "events": ["item.completed", "item.failed"]}
    with ExampleSite() as site:
        urls = [site.url(f"/products/{n}") for n in range(1, args.pages + 1)]
        base_id, base = crawl(store, uri, urls, args.concurrency, {})
        runs = {"off": base}
        runs["item_events"] = crawl(store, uri, urls, args.concurrency, {"webhook": events})[1]
        changed = {"webhook": {**events, "events": [*events["events"], "item.changed"]},
                   "compare": {"to": base_id, "ignore_fields": []},
                   "changes": dict.fromkeys(CHANGE_STATUSES, 0)}
        runs["events_and_changes"] = crawl(store, uri, urls, args.concurrency, changed)[1]
        runs["off_again"] = crawl(store, uri, urls, args.concurrency, {})[1]
    store.db[OUTBOX].delete_many({"url": HOOK})  # never to be sent
    baseline = (runs["off"]["pages_per_s"] + runs["off_again"]["pages_per_s"]) / 2
    for name, figures in runs.items():
        print(f"{name:19} {figures['pages_per_s']:7.0f} pages/s  ratio "
              f"{figures['pages_per_s'] / baseline:5.2f}  events {figures['events']}  "
              f"changes {figures['changes']}")
    record("events", {"pages": args.pages, "concurrency": args.concurrency, **runs,
                      "events_ratio": round(runs["item_events"]["pages_per_s"] / baseline, 3),
                      "changes_ratio": round(
                          runs["events_and_changes"]["pages_per_s"] / baseline, 3)})


if __name__ == "__main__":
    main()
