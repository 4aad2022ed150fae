"""Submit and status at scale: storing 5,000 / 10,000 items, and the reads a status poll makes.

Storing (``BatchStore.create_batch``: one pending item per URL, in
``insert_many`` chunks, then the batch document) is compared, in the same run,
with raw ``insert_many`` of the same documents into scratch collections with
fewer indexes: the embedded server's cost is per document *and per index*
(each secondary index adds roughly the cost of the ``_id`` index alone), so
these baselines show what the item indexes cost.

Reads, on the stored 10,000-item batch: the batch document (counters), a
50-item page deep in the batch by ``_id`` list and by ``(batch_id, index)``
range, and the status-index queries the workers make at the end of a batch.

    python bench/submit.py [--sizes 5000,10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pymongo import ASCENDING

from batchscraper.inputs import BatchSpec, Limits, parse_batch
from batchscraper.store import INSERT_CHUNK, BatchStore, duplicate_groups, item_id
from bench._common import bench_store, record
from bench.throughput import SCHEMA

INDEX_SETS: dict[str, list[list[tuple[str, int]]]] = {
    "_id only": [],
    "_id + (batch_id, status)": [[("batch_id", ASCENDING), ("status", ASCENDING)]],
    "_id + (batch_id, index) + (batch_id, status)": [
        [("batch_id", ASCENDING), ("index", ASCENDING)],
        [("batch_id", ASCENDING), ("status", ASCENDING)],
    ],
}
PAGE = 50


def median_ms(function: Callable[[], Any], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(samples), 1)


def raw_insert(store: BatchStore, spec: BatchSpec, indexes: list[list[tuple[str, int]]]) -> float:
    """Seconds to insert the batch's item documents into a fresh collection with ``indexes``."""
    scratch = store.db["bench_insert_scratch"]
    scratch.drop()
    for keys in indexes:
        scratch.create_index(keys)
    first_of, copies = duplicate_groups(spec)
    docs = BatchStore._item_docs("b_scratch", spec, first_of, copies, 0, len(spec.urls))
    started = time.perf_counter()
    for start in range(0, len(docs), INSERT_CHUNK):
        scratch.insert_many(docs[start : start + INSERT_CHUNK], ordered=False)
    seconds = time.perf_counter() - started
    scratch.drop()
    return seconds


def submit_figures(store: BatchStore, size: int, repeat: int) -> tuple[dict[str, Any], str]:
    urls = [f"https://shop{n % 50}.example/products/{n}" for n in range(size)]
    started = time.perf_counter()
    spec = parse_batch(urls, SCHEMA, limits=Limits(max_urls=size))
    parse_s = time.perf_counter() - started
    create_s, batch_id = [], ""
    for _ in range(repeat):
        started = time.perf_counter()
        batch_id = store.create_batch(spec)["_id"]
        create_s.append(time.perf_counter() - started)
    figures: dict[str, Any] = {
        "urls": size,
        "parse_s": round(parse_s, 3),
        "create_batch_s": round(statistics.median(create_s), 3),
        "raw_insert_s": {
            name: round(statistics.median(raw_insert(store, spec, keys) for _ in range(repeat)), 3)
            for name, keys in INDEX_SETS.items()
        },
    }
    return figures, batch_id


def read_figures(store: BatchStore, batch_id: str, repeat: int) -> dict[str, float]:
    total = store.get_batch(batch_id)["counters"]["total"]
    deep = total - PAGE * 2
    ids = [item_id(batch_id, index) for index in range(deep, deep + PAGE)]
    by_ids = {"_id": {"$in": ids}}
    return {
        "batch_document_ms": median_ms(lambda: store.get_batch(batch_id), repeat * 10),
        "page_by_id_list_ms": median_ms(lambda: list(store.items.find(by_ids)), repeat * 10),
        "lease_wait_ms": median_ms(lambda: store.lease_wait(batch_id, "bench"), repeat * 3),
        "reclaim_expired_ms": median_ms(
            lambda: store.reclaim_expired(batch_id, "bench", 64, 60.0), repeat * 3
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,10000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    store, _ = bench_store()
    submits, batch_id = [], ""
    for size in (int(size) for size in args.sizes.split(",")):
        figures, batch_id = submit_figures(store, size, args.repeat)
        raw = figures["raw_insert_s"]
        print(f"{size} URLs: parse {figures['parse_s']:.2f}s, create_batch "
              f"{figures['create_batch_s']:.2f}s; raw insert_many: "
              + ", ".join(f"{name} {seconds:.2f}s" for name, seconds in raw.items()), flush=True)
        submits.append(figures)
    reads = read_figures(store, batch_id, args.repeat)
    print("reads on the last batch: " + ", ".join(f"{k} {v}" for k, v in reads.items()))
    record("submit", {"submits": submits, "reads": reads,
                      "items_in_collection": store.items.estimated_document_count()})


if __name__ == "__main__":
    main()
