"""Learned templates vs the per-page LLM: LLM calls, field accuracy, pages/s and CPU per page,
same pages, same run.

The template shop (``batchscraper/demo/shop.py``: no structured data; description lengths, an
optional material, promo blocks, reordered sections, an A/B layout on every 7th product page,
and a listing page every ``LISTING_EVERY`` URLs) is served locally. The fake OpenAI-compatible
server of the tests answers from each page (what a shop page says is its ground truth,
:func:`~batchscraper.demo.shop.item_truth`), taking ``--latency`` s per call, and every
``--sloppy-every``-th answer leaves an optional field it could fill null, as a real model
sometimes does. Each run is a fresh batch of a fresh owner (no template reuse between runs):

(a) ``templates: off``: every page costs one LLM call (the baseline);
(b) ``templates: auto`` on the same pages;
(c) the same owner's second batch on other product pages: templates reused, no learning;
(d) ``templates: auto`` on a shop whose product template changes half-way (``switch_at``):
    the old template's misses retire it and a new one is learned; accuracy of both halves;
(b') with ``--compare PATH``, (b) again (a fresh owner) crawled by the code of another
    checkout (``--compare ../main``: before/after figures in one run);
(e) bare Scrapy fetching the pages of (a) at the same concurrency (``bench/bare_spider.py``:
    no parsing, no storage): the pages/s no pipeline in one crawl process can pass on this
    machine, printed beside the pages/s that "10x the per-page LLM" asks for.

Accuracy: the schema's fields equal to the page's truth (numbers equal, strings equal after
whitespace folding, an empty optional field equal to null) over product pages; a failed item
scores 0. CPU per page: the crawl process's user + system seconds (``cpu_ms_per_page``), the
embedded MongoDB server's (``mongo_cpu_ms_per_page``) and this process's, which serves the shop
and the fake LLM (``sites_cpu_ms_per_page``): on a small machine they share its cores. Prints
each run, the ratios against (a), and one JSON line.

    python bench/templates.py [--pages 1000] [--concurrency 16] [--latency 0.5]
        [--sloppy-every 20] [--compare PATH]
"""

from __future__ import annotations

import argparse
import resource
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchscraper.demo.shop import PRODUCT_SCHEMA as SCHEMA
from batchscraper.demo.shop import TemplateShop, item_truth
from batchscraper.inputs import parse_batch
from batchscraper.store import BatchStore
from batchscraper.templates.selectors import same_value
from batchscraper.templates.store import STATUSES
from bench._common import (
    REPO,
    bench_store,
    cpu_seconds,
    mongo_server_pid,
    record,
    run_crawl,
)
from bench.throughput import bare_scrapy, elapsed
from tests.fakellm import FakeLLM

LISTING_EVERY = 50
TEMPLATE_COUNTERS = ("template_pages", "template_misses", "templates_learned",
                     "template_audits", "template_disagreements")


def shop_urls(shop: TemplateShop, first: int, pages: int) -> list[str]:
    """``pages`` product pages from ``first`` on, with a listing page every LISTING_EVERY."""
    urls = []
    for n in range(first, first + pages):
        if n % LISTING_EVERY == 0:
            urls.append(shop.url(f"/list/{n // LISTING_EVERY}"))
        urls.append(shop.url(f"/item/{n}"))
    return urls


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def product_number(url: str) -> int | None:
    kind, _, number = urlsplit(url).path.strip("/").partition("/")
    return int(number) if kind == "item" else None


def field_scores(item: dict[str, Any]) -> tuple[int, int]:
    """(fields equal to the truth, fields) of one product page's record."""
    truth = item_truth(product_number(item["url"]) or 0)
    if item["status"] != "completed":
        return 0, len(truth)
    data = item.get("data") or {}
    return sum(same_value(data.get(name), value) for name, value in truth.items()), len(truth)


def accuracy(items: list[dict[str, Any]]) -> float | None:
    scores = [field_scores(item) for item in items]
    total = sum(fields for _, fields in scores)
    return round(sum(right for right, _ in scores) / total, 4) if total else None


def crawl(store: BatchStore, uri: str, fake: FakeLLM, urls: list[str], mode: str, owner: str,
          concurrency: int, code: Path = REPO) -> dict[str, Any]:
    """One crawl of a fresh batch; its figures, and its product pages' records."""
    options = {"concurrency": concurrency, "render_js": "never", "retries": 0,
               "templates": mode}
    batch_id = store.create_batch(parse_batch(urls, SCHEMA, options=options), owner=owner)["_id"]
    calls, cpu, sites = fake.calls, children_cpu(), own_cpu()
    mongo = cpu_seconds(mongo_server_pid())
    settings = fake.settings(BATCH_HEURISTICS_ENABLED=True)
    result, _ = run_crawl(
        {"batch_id": batch_id},
        {**settings, "BATCH_ALLOWED_NETWORKS": "127.0.0.0/8", "LOG_LEVEL": "INFO",
         "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency, "BATCH_BROWSER_ENABLED": False},
        {"MONGO_URI": uri}, code=code,
    )
    cpu, calls = children_cpu() - cpu, fake.calls - calls
    mongo, sites = cpu_seconds(mongo_server_pid()) - mongo, own_cpu() - sites
    seconds = elapsed(result.stderr)
    counters = store.get_batch(batch_id)["counters"]
    items = list(store.iter_items(batch_id))
    products = [item for item in items if product_number(item["url"])]
    listings = [item for item in items if not product_number(item["url"])]
    templates = store.db["templates"]
    figures = {
        "mode": mode,
        "pages": len(urls),
        "llm_calls": calls,
        "calls_per_page": round(calls / len(urls), 4),
        "calls_per_product_page": round(sum(i.get("llm_calls") or 0 for i in products)
                                        / len(products), 4),
        # listing pages never fit the product schema (no rating): they fail validation, with
        # the LLM's answer (and its repair) or with a template learned from those answers
        "listing_calls": sum(i.get("llm_calls") or 0 for i in listings),
        "listings_by_template": sum((i.get("extraction") or {}).get("method") == "template"
                                    for i in listings),
        "accuracy": accuracy(products),
        "pages_per_s": round(len(urls) / seconds, 1),
        "cpu_ms_per_page": round(1000 * cpu / len(urls), 2),
        "mongo_cpu_ms_per_page": round(1000 * mongo / len(urls), 2),
        "sites_cpu_ms_per_page": round(1000 * sites / len(urls), 2),
        "completed": counters["completed"],
        "failed": counters["failed"],
        **{name: counters.get(name, 0) for name in TEMPLATE_COUNTERS},
        "templates": {status: n for status in STATUSES
                      if (n := templates.count_documents({"owner": owner, "status": status}))},
    }
    return {"figures": figures, "products": products}


def ratio(value: float | None, baseline: float | None) -> float | None:
    return round(value / baseline, 3) if value is not None and baseline else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1000, help="product pages per batch")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds per LLM call")
    parser.add_argument("--sloppy-every", type=int, default=20,
                        help="every Nth LLM answer misses an optional field (0: never)")
    parser.add_argument("--compare", type=Path, metavar="PATH",
                        help="also crawl run (b) with the code of this checkout")
    args = parser.parse_args()
    store, uri = bench_store()
    fake = FakeLLM().start()
    fake.labelled, fake.latency, fake.sloppy_every = True, args.latency, args.sloppy_every
    switch_at = 1 + args.pages // 2
    try:
        with TemplateShop(ab=True) as shop:
            urls = shop_urls(shop, 1, args.pages)
            owner = f"bench-{uuid.uuid4().hex[:8]}"
            runs = {
                "llm_per_page": crawl(store, uri, fake, urls, "off", owner, args.concurrency),
                "templates": crawl(store, uri, fake, urls, "auto", owner, args.concurrency),
                "reused": crawl(store, uri, fake, shop_urls(shop, args.pages + 1, args.pages),
                                "auto", owner, args.concurrency),
            }
            bare_pages_per_s = round(len(urls) / bare_scrapy(urls, args.concurrency), 1)
            if args.compare is not None:
                runs[f"templates@{args.compare}"] = crawl(
                    store, uri, fake, urls, "auto", f"bench-{uuid.uuid4().hex[:8]}",
                    args.concurrency, args.compare.resolve())
        with TemplateShop(switch_at=switch_at, ab=True) as changing:
            owner = f"bench-{uuid.uuid4().hex[:8]}"
            runs["site_change"] = crawl(store, uri, fake, shop_urls(changing, 1, args.pages),
                                        "auto", owner, args.concurrency)
    finally:
        fake.stop()
    products = runs["site_change"]["products"]
    halves = (accuracy([i for i in products if (product_number(i["url"]) or 0) < switch_at]),
              accuracy([i for i in products if (product_number(i["url"]) or 0) >= switch_at]))
    figures = {name: run["figures"] for name, run in runs.items()}
    base, used = figures["llm_per_page"], figures["templates"]
    summary = {
        "calls_per_page": used["calls_per_page"],
        "calls_per_product_page": used["calls_per_product_page"],
        "calls_ratio": ratio(used["calls_per_page"], base["calls_per_page"]),
        "accuracy_ratio": ratio(used["accuracy"], base["accuracy"]),
        "speedup": ratio(used["pages_per_s"], base["pages_per_s"]),
        "bare_scrapy_pages_per_s": bare_pages_per_s,
        "ten_x_pages_per_s": round(10 * base["pages_per_s"], 1),
        "templates_vs_bare_scrapy": ratio(used["pages_per_s"], bare_pages_per_s),
        "cpu_ratio": ratio(used["cpu_ms_per_page"], base["cpu_ms_per_page"]),
        "reused_calls_per_page": figures["reused"]["calls_per_page"],
        "site_change_accuracy_halves": halves,
        "site_change_second_half_ratio": ratio(halves[1], halves[0]),
    }
    for name, run in figures.items():
        print(f"{name:>13}: {run}")
    print(f"templates vs per-page LLM: {summary['calls_per_page']} calls/page (target <= 0.02; "
          f"product pages {summary['calls_per_product_page']}), "
          f"x{summary['calls_ratio']} calls, x{summary['accuracy_ratio']} accuracy (target >= 1),"
          f" x{summary['speedup']} pages/s (target >= 10), x{summary['cpu_ratio']} CPU/page; "
          f"reused: {summary['reused_calls_per_page']} calls/page; site change at page "
          f"{switch_at}: accuracy {halves[0]} -> {halves[1]} "
          f"(x{summary['site_change_second_half_ratio']}, target >= 0.95)")
    print(f"ceiling: 10x the per-page LLM is {summary['ten_x_pages_per_s']} pages/s; bare Scrapy "
          f"fetching the same pages (no parsing, no storage) does "
          f"{summary['bare_scrapy_pages_per_s']} pages/s; templates reach "
          f"x{summary['templates_vs_bare_scrapy']} of it")
    if args.compare is not None:
        other = figures[f"templates@{args.compare}"]
        print(f"the code at {args.compare} on run (b): {other['calls_per_page']} calls/page "
              f"(product pages {other['calls_per_product_page']}), x"
              f"{ratio(other['pages_per_s'], base['pages_per_s'])} pages/s; this code: "
              f"x{ratio(used['calls_per_page'], other['calls_per_page'])} calls, "
              f"x{ratio(used['pages_per_s'], other['pages_per_s'])} pages/s")
    record("templates", {"pages": args.pages, "concurrency": args.concurrency,
                         "latency": args.latency, "sloppy_every": args.sloppy_every,
                         **summary, "runs": figures})


if __name__ == "__main__":
    main()
