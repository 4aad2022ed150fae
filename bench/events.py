"""Per-item webhook events and change detection: their cost per page, against no events, same run.

Crawls of the same pages, each on a fresh batch:

* ``off``: no webhook (the baseline);
* ``item_events``: ``webhook.events`` with ``item.completed`` and ``item.failed``: one
  outbox document per item, written in the transaction of its record's group;
* ``events_and_changes``: that plus ``item.changed`` and ``compare_to`` an earlier run of
  the same pages: each group also reads the previous run's records and every item gets a
  ``change``.

The variants run ``--rounds`` times in rotated order (a noisy machine drifts: no variant
always runs first), after one unmeasured crawl that is also the run compared with. Reported
per variant: the median pages/s and CPU ms per page of the crawl and of the MongoDB server
(the figure load disturbs least), each as a ratio to ``off``.

Nothing delivers the events here (no Scrapyd): what is measured is the crawl's cost.

    python bench/events.py [--pages 2000] [--concurrency 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchscraper.changes import CHANGE_STATUSES
from batchscraper.demo.site import ExampleSite
from batchscraper.inputs import parse_batch
from batchscraper.store import BatchStore
from batchscraper.store.outbox import OUTBOX
from batchscraper.webhooks import new_secret
from bench._common import CPU, bench_store, http_crawl_settings, mongo_server_pid, record, run_crawl
from bench.throughput import SCHEMA, elapsed

HOOK = "https://hooks.example/batches"


def crawl(store: BatchStore, uri: str, urls: list[str], concurrency: int,
          extra: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """One crawl of a fresh batch; (its id, pages/s, CPU per page and what it wrote)."""
    options = {"concurrency": concurrency, "render_js": "never"}
    batch_id = store.create_batch(parse_batch(urls, SCHEMA, options=options), extra=extra)["_id"]
    with CPU(mongo_server_pid()) as cpu:
        result, _ = run_crawl(
            {"batch_id": batch_id},
            http_crawl_settings(concurrency),
            {"MONGO_URI": uri},
        )
    batch = store.get_batch(batch_id)
    return batch_id, {
        "pages_per_s": round(len(urls) / elapsed(result.stderr), 1),
        **cpu.per_page(len(urls)),
        "completed": batch["counters"]["completed"],
        "events": store.db[OUTBOX].count_documents({"batch_id": batch_id}),
        "changes": {k: n for k, n in (batch.get("changes") or {}).items() if n},
    }


def variants(base_id: str) -> dict[str, dict[str, Any]]:
    """Each variant's extra batch fields."""
    events = {"url": HOOK, "secret": new_secret(), "events": ["item.completed", "item.failed"]}
    return {
        "off": {},
        "item_events": {"webhook": events},
        "events_and_changes": {
            "webhook": {**events, "events": [*events["events"], "item.changed"]},
            "compare": {"to": base_id, "ignore_fields": []},
            "changes": dict.fromkeys(CHANGE_STATUSES, 0),
        },
    }


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds of one variant."""
    keys = ("pages_per_s", "crawl_cpu_ms_per_page", "mongodb_cpu_ms_per_page")
    medians = {key: round(statistics.median(run[key] for run in rounds), 2) for key in keys}
    medians["cpu_ms_per_page"] = round(
        medians["crawl_cpu_ms_per_page"] + medians["mongodb_cpu_ms_per_page"], 2)
    last = rounds[-1]
    return {**medians, "events": last["events"], "changes": last["changes"],
            "completed": last["completed"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    store, uri = bench_store()
    with ExampleSite() as site:
        urls = [site.url(f"/products/{n}") for n in range(1, args.pages + 1)]
        base_id, _ = crawl(store, uri, urls, args.concurrency, {})  # unmeasured; compared with
        extras = variants(base_id)
        names = list(extras)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for round_number in range(args.rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                runs[name].append(crawl(store, uri, urls, args.concurrency, extras[name])[1])
    store.db[OUTBOX].delete_many({"url": HOOK})  # never to be sent
    figures = {name: summary(rounds) for name, rounds in runs.items()}
    off = figures["off"]
    for name, row in figures.items():
        row["pages_ratio"] = round(row["pages_per_s"] / off["pages_per_s"], 3)
        row["cpu_ratio"] = round(row["cpu_ms_per_page"] / off["cpu_ms_per_page"], 3)
        print(f"{name:19} {row['pages_per_s']:7.0f} pages/s ({row['pages_ratio']:.2f}x)  "
              f"CPU ms/page crawl {row['crawl_cpu_ms_per_page']:.2f} + MongoDB "
              f"{row['mongodb_cpu_ms_per_page']:.2f} = {row['cpu_ms_per_page']:.2f} "
              f"({row['cpu_ratio']:.2f}x)  events {row['events']}  changes {row['changes']}")
    record("events", {"pages": args.pages, "concurrency": args.concurrency,
                      "rounds": args.rounds, **figures})


if __name__ == "__main__":
    main()
