"""JavaScript pages/s through the batch spider vs raw Playwright, and browser memory.

Both sides render the same app-shell pages of the local example site with
the same Chromium, launch flags and page concurrency, in the same run:

- raw: Playwright's async API as a hand-written script would use it:
  ``goto(wait_until=load)``, wait for the content the page's script adds, then
  ``content()`` — no Scrapy, no extraction, no MongoDB. Twice: a new tab per URL,
  and each worker navigating one reused tab (the spider's way; the ratio is
  against this one);
- raw through the egress guard: the reused-tab run again, with Chromium sending
  every connection through :class:`~batchscraper.egress.EgressGuard` as the spider
  does — the guard's own cost (runs alternate, best of two each);
- spider: ``scrapy crawl batch -a render_js=always`` (extraction, validation,
  storage included, egress guard included), timed from the batch's ``started_at``
  to ``finished_at``.

Also samples the PSS of each side's Chromium tree; for the spider, the peak
of the run's second half vs its first half shows whether it grows with pages.

    python bench/render.py [--pages 200] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.async_api import async_playwright
from scrapy.settings import Settings

from batchscraper.browser import egress_args
from batchscraper.demo.site import ExampleSite
from batchscraper.downloadermiddlewares.ssrf import AddressPolicy, resolve
from batchscraper.egress import EgressGuard
from batchscraper.inputs import parse_batch
from batchscraper.render import CHROMIUM_ARGS, chromium_executable
from bench._common import MemorySampler, bench_store, mb, record, run_crawl

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
          "required": ["name", "price"]}


async def raw_playwright(
    urls: list[str], concurrency: int, reuse: bool, guard: EgressGuard | None = None
) -> float:
    """Seconds to render every URL with plain Playwright (browser launch included).

    Like a hand-written script for these pages: go to the URL, wait for the content
    the page's script adds (``#root h1``), read the HTML. ``reuse``: each worker keeps
    one tab and navigates it from URL to URL, else a new tab per URL. ``guard``: every
    connection goes through this egress guard, with the spider's flags.
    """
    args = [*CHROMIUM_ARGS, *(egress_args(guard) if guard else ())]
    started = time.perf_counter()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_executable(None), args=args, headless=True
        )
        context = await browser.new_context()
        queue: asyncio.Queue[str] = asyncio.Queue()
        for url in urls:
            queue.put_nowait(url)

        async def worker() -> None:
            page = await context.new_page() if reuse else None
            while not queue.empty():
                url = queue.get_nowait()
                tab = page or await context.new_page()
                await tab.goto(url, wait_until="load")
                await tab.wait_for_selector("#root h1")
                await tab.content()
                if not reuse:
                    await tab.close()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await browser.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("-s", "--set", action="append", default=[], metavar="NAME=VALUE",
                        help="extra Scrapy setting for the spider run")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.set)
    store, uri = bench_store()

    with ExampleSite() as site:
        urls = [site.url(f"/app-shell/{n}") for n in range(1, args.pages + 1)]
        guard = EgressGuard(
            AddressPolicy.from_settings(Settings({"BATCH_ALLOWED_NETWORKS": ["127.0.0.0/8"]})),
            resolve, connect_timeout=10,
        )
        guard.start()
        with MemorySampler(os.getpid()) as raw_memory:
            raw_new_seconds = asyncio.run(raw_playwright(urls, args.concurrency, reuse=False))
            plain, guarded = [], []
            for _ in range(2):
                plain.append(asyncio.run(raw_playwright(urls, args.concurrency, reuse=True)))
                guarded.append(
                    asyncio.run(raw_playwright(urls, args.concurrency, reuse=True, guard=guard))
                )
            raw_seconds, guarded_seconds = min(plain), min(guarded)
        guard.stop()
        spec = parse_batch(urls, SCHEMA, options={
            "render_js": "always", "concurrency": args.concurrency, "retries": 0})
        batch_id = store.create_batch(spec)["_id"]
        _, spider_memory = run_crawl(
            {"batch_id": batch_id},
            {"BATCH_ALLOWED_NETWORKS": "127.0.0.0/8", "BATCH_BROWSER_MAX_PAGES": args.concurrency,
             "LOG_LEVEL": "WARNING", **extra},
            {"MONGO_URI": uri},
        )
    batch = store.get_batch(batch_id)
    spider_seconds = (batch["finished_at"] - batch["started_at"]).total_seconds()
    samples = [s for s in spider_memory.browser if s]
    half = len(samples) // 2
    first_half, second_half = max(samples[:half], default=0), max(samples[half:], default=0)
    raw_new_rate = args.pages / raw_new_seconds
    raw_rate = args.pages / raw_seconds
    guarded_rate = args.pages / guarded_seconds
    guard_pages = args.pages * len(guarded)
    spider_rate = args.pages / spider_seconds
    print(f"raw Playwright: {raw_new_rate:.2f} pages/s with a new tab per URL, "
          f"{raw_rate:.2f} with reused tabs   spider: {spider_rate:.2f} pages/s   "
          f"ratio {spider_rate / raw_rate:.2f} vs reused tabs (target >= 0.8), "
          f"{spider_rate / raw_new_rate:.2f} vs new tabs")
    print(f"egress guard: raw reused tabs {raw_rate:.2f} pages/s without it, "
          f"{guarded_rate:.2f} through it (ratio {guarded_rate / raw_rate:.2f}, target >= 0.9; "
          f"{guard.connections} connections; the guard's thread: "
          f"{guard.cpu_seconds * 1000 / guard_pages:.2f} CPU s per 1,000 pages)")
    print(f"browser PSS peak: raw {mb(max(raw_memory.browser, default=0))} MB, "
          f"spider {mb(max(samples, default=0))} MB; spider first half {mb(first_half)} MB, "
          f"second half {mb(second_half)} MB (flat: ratio {second_half / max(first_half, 1):.2f})")
    record("render", {
        "pages": args.pages, "concurrency": args.concurrency, "settings": extra,
        "raw_new_tab_pages_per_s": round(raw_new_rate, 2), "raw_pages_per_s": round(raw_rate, 2),
        "raw_guarded_pages_per_s": round(guarded_rate, 2),
        "guard_ratio": round(guarded_rate / raw_rate, 3),
        "guard_cpu_s_per_1000_pages": round(guard.cpu_seconds * 1000 / guard_pages, 2),
        "spider_pages_per_s": round(spider_rate, 2),
        "ratio": round(spider_rate / raw_rate, 3),
        "completed": batch["counters"]["completed"],
        "raw_browser_pss_peak_mb": mb(max(raw_memory.browser, default=0)),
        "spider_browser_pss_peak_mb": mb(max(samples, default=0)),
        "spider_browser_pss_first_half_mb": mb(first_half),
        "spider_browser_pss_second_half_mb": mb(second_half),
    })


if __name__ == "__main__":
    main()
