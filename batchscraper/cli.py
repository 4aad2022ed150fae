"""The ``batchscraper`` command: helpers around ``scrapy crawl batch``.

``batchscraper demo`` runs a real batch against the bundled example site,
so a fresh machine with no internet sees the whole flow: fetch, extract,
validate, store in MongoDB, export.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence

from batchscraper.examplesite import ExampleSite
from batchscraper.mongo import home_dir
from batchscraper.store import store_for

DEMO_SCHEMA = [
    {"field": "name", "type": "string", "required": True, "example": "Product 1"},
    {"field": "sku", "type": "string", "example": "SKU-00001"},
    {"field": "brand", "type": "string", "example": "Acme"},
    {"field": "price", "type": "number", "required": True, "example": 9.99},
    {"field": "in_stock", "type": "boolean", "example": True},
]
# a few URLs that fail, to show how errors are recorded
DEMO_FAILING = ("/status/404", "/binary", "/redirect-loop", "/plain/1")


def demo(pages: int) -> int:
    """Serve the example site, crawl ``pages`` product pages plus a few failures, show results."""
    workdir = home_dir() / "demo"
    workdir.mkdir(parents=True, exist_ok=True)
    results = workdir / "results.jsonl"
    with ExampleSite() as site:
        urls = [site.url(f"/products/{n}") for n in range(1, pages + 1)]
        urls += [site.url(path) for path in DEMO_FAILING]
        (workdir / "urls.txt").write_text("\n".join(urls) + "\n")
        (workdir / "schema.json").write_text(json.dumps(DEMO_SCHEMA, indent=2))
        command = [
            sys.executable, "-m", "scrapy", "crawl", "batch",
            "-a", f"urls=@{workdir / 'urls.txt'}",
            "-a", f"schema=@{workdir / 'schema.json'}",
            "-a", "options=" + json.dumps({"concurrency": 16, "timeout_per_url": 10}),
            "-O", str(results),
            # the example site is on 127.0.0.1, which the SSRF guard refuses by default
            "-s", "BATCH_ALLOWED_NETWORKS=127.0.0.1/32",
        ]
        print("$ " + " ".join(command[2:]), flush=True)
        env = {**os.environ, "SCRAPY_SETTINGS_MODULE": "batchscraper.settings"}
        finished = subprocess.run(command, env=env, check=False)
    if finished.returncode != 0:
        return finished.returncode
    records = [json.loads(line) for line in results.read_text().splitlines()]
    batch_id = records[0]["batch_id"]
    batch = store_for().get_batch(batch_id)
    print(f"\nbatch {batch_id}: {batch['status']}, counters {json.dumps(batch['counters'])}")
    for record in sorted(records, key=lambda r: r["index"])[:3]:
        print(json.dumps({k: record[k] for k in ("index", "url", "status", "data")}))
    failed = [r for r in records if r["status"] == "failed"]
    for record in failed:
        print(f"failed: {record['url']} -> {record['error']['code']}: {record['error']['message']}")
    print(f"\nrecords: {results}\nMongoDB: batches/items in {store_for().db.name}; "
          f"re-run with: scrapy crawl batch -a batch_id={batch_id}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batchscraper", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="run a real batch against the bundled site")
    demo_parser.add_argument("--pages", type=int, default=50, help="product pages (default 50)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo(args.pages)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())

