"""Learning a template under load: held pages, verification that refuses, learning that fails.

The extract pipeline runs in-process on the template shop's pages (as in
``test_templates``), many pages at once as a crawl feeds it, against the
embedded MongoDB-wire server and the fake OpenAI-compatible server answering
from each page with a latency; the dev corpus check crawls for real.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from scrapy.exceptions import DropItem

from batchscraper.demo.shop import TemplateShop, item_page, item_truth, list_page
from batchscraper.inputs import parse_batch
from batchscraper.items import PageItem
from batchscraper.llm.client import OpenAIChatClient
from batchscraper.store import BatchStore
from batchscraper.templates.store import TemplateStore
from tests.fakellm import FakeLLM, fake_llm_fixture, fake_llm_server_fixture  # noqa: F401
from tests.test_templates import HOST, SCHEMA, Shop, owner, shop_fixture, truth  # noqa: F401

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def extract_together(run: Shop, pages: list[tuple[str, str]],
                     during: Callable[[], Any] | None = None) -> list[PageItem | Exception]:
    """Run the pipeline over ``(path, html)`` pages all at once, as a crawl's pages arrive;
    ``during`` runs a moment after they started. A page's exception is its result."""
    async def one(index: int, path: str, html: str) -> PageItem:
        await asyncio.sleep(index * 0.002)  # in order, as downloads finish
        item = PageItem(batch_id=run.run.batch_id, index=index, url=f"http://{HOST}{path}",
                        body=html)
        return await run.pipeline.process_item(item)

    async def work() -> list[PageItem | Exception]:
        tasks = [asyncio.ensure_future(one(i, path, html))
                 for i, (path, html) in enumerate(pages)]
        if during is not None:
            await asyncio.sleep(0.3)
            during()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        await run.pipeline.close_spider()
        client = run.pipeline.extractor.client if run.pipeline.extractor else None
        if isinstance(client, OpenAIChatClient) and client._client is not None:
            await client._client.close()
            client._client = None
        return [d if isinstance(d, (PageItem, Exception)) else RuntimeError(d) for d in done]
    return asyncio.run(work())


def products(first: int, count: int) -> list[tuple[str, str]]:
    return [(f"/item/{n}", item_page(n)) for n in range(first, first + count)]


def completed(results: list[PageItem | Exception]) -> list[PageItem]:
    items = [r for r in results if isinstance(r, PageItem)]
    assert len(items) == len(results), [r for r in results if not isinstance(r, PageItem)]
    return items


def test_pages_wait_for_their_template_instead_of_asking_the_llm(shop, fake_llm: FakeLLM) -> None:
    fake_llm.latency = 0.3
    run = shop(owner(), BATCH_TEMPLATE_AUDIT_EVERY=0)
    items = completed(extract_together(run, products(1, 40)))
    # 3 samples and 2 held-out pages were asked; the 35 pages that came meanwhile waited
    assert fake_llm.calls == 5
    assert sum(i.llm_calls for i in items) == 5
    served = [i for i in items if i.extraction["method"] == "template"]
    assert len(served) == 35
    for n, item in enumerate(items, 1):
        assert item.status == "completed", item.error
        assert {k: v for k, v in item.data.items() if v is not None} == truth(n), n
    assert run.stat("held") >= 30 and run.stat("hold_timeouts") == 0
    (doc,) = run.templates()
    assert (doc["status"], doc["hits"], doc["asking"]) == ("active", 35, [])


def test_a_layout_variant_tries_its_siblings_rules_first(shop, fake_llm: FakeLLM) -> None:
    run = shop(owner(), BATCH_TEMPLATE_AUDIT_EVERY=0)
    run.extract([(n, item_page(n)) for n in range(1, 8)])
    assert fake_llm.calls == 5
    variant = [(n, item_page(n, ab=True)) for n in range(7, 71, 7)]  # the B layout
    items = run.extract(variant)
    # its own template, verified on 2 held-out pages with the A layout's rules: no samples
    assert fake_llm.calls == 7
    assert [i.llm_calls for i in items] == [1, 1] + [0] * 8
    for (n, _), item in zip(variant, items, strict=True):
        assert {k: v for k, v in item.data.items() if v is not None} == truth(n), n
    docs = run.templates()
    assert len(docs) == 2 and {d["status"] for d in docs} == {"active"}
    assert [d["seeded"] for d in sorted(docs, key=lambda d: d["version"])] == [False, True]


def test_a_layout_met_while_the_first_is_learned_waits_for_its_rules(
        shop, fake_llm: FakeLLM) -> None:
    fake_llm.latency = 0.2
    run = shop(owner(), BATCH_TEMPLATE_AUDIT_EVERY=0)
    # every 7th page is the B layout: B's first pages come while A is still being learned
    pages = [(f"/item/{n}", item_page(n, ab=True)) for n in range(1, 50)]
    items = completed(extract_together(run, pages))
    # A: 3 samples and 2 held-out pages; B waited for A's rules: its 2 held-out pages only
    assert fake_llm.calls == 7
    variant = [i for n, i in enumerate(items, 1) if n % 7 == 0]
    assert sum(i.llm_calls for i in variant) == 2
    for n, item in enumerate(items, 1):
        assert item.status == "completed", item.error
        assert {k: v for k, v in item.data.items() if v is not None} == truth(n), n
    docs = sorted(run.templates(), key=lambda d: d["created_at"])
    assert [(d["status"], d["seeded"], d["attempts"]) for d in docs] == [
        ("active", False, 1), ("active", True, 0)]
    assert docs[1]["rules"] == docs[0]["rules"] and docs[1]["samples"] == []
    assert run.stat("seeded") == 1 and run.stat("hold_timeouts") == 0


def test_a_shape_whose_pages_do_not_fit_the_schema_is_learned_as_the_llm_answers_it(
        shop, fake_llm: FakeLLM) -> None:
    fake_llm.latency = 0.2
    listings = [(f"/list/{n}", list_page(n)) for n in range(1, 13)]
    asked = completed(extract_together(shop(owner(), options={"templates": "off"}), listings))
    calls = fake_llm.calls
    run = shop(owner(), BATCH_TEMPLATE_AUDIT_EVERY=0)
    items = completed(extract_together(run, listings))
    # listings have no rating (required): the LLM's answers say so, and the template reads it
    # absent: verified on 2 held-out pages like any candidate
    (doc,) = run.templates()
    assert doc["status"] == "active" and "rating" in doc["reason"]
    assert doc["rules"]["rating"] == {"absent": True, "kind": "number"}
    # each answer without a rating got its repair call; the template's pages cost none
    llm = [i for i in items if i.llm_calls]
    served = [i for i in items if not i.llm_calls]
    assert [i.llm_calls for i in llm] == [2] * 5 and fake_llm.calls - calls == 10
    assert len(served) == 7 and run.stat("unfit_pages") == 7
    assert all(i.extraction["method"] == "template" and i.extraction["template_lacks"]
               == ["rating"] for i in served)
    # every page's record is the one the LLM gave it (without a rating: it fails validation)
    assert [i.data for i in items] == [i.data for i in asked]
    assert all(i.data and "rating" not in i.data for i in items)


def test_a_claimed_page_whose_llm_call_fails_is_replaced_by_a_held_one(
        shop, fake_llm: FakeLLM) -> None:
    fake_llm.latency = 0.2
    fake_llm.fail_next("500", times=6)  # the first 3 pages' calls and their one retry each
    run = shop(owner(), BATCH_TEMPLATE_AUDIT_EVERY=0, BATCH_LLM_RETRIES=1)
    items = completed(extract_together(run, products(1, 30)))
    failed = [i for i in items if i.status == "failed"]
    assert failed and all(i.error["code"] == "LLM_ERROR" for i in failed)
    answered = [i for i in items if i.status == "completed" and i.llm_calls]
    assert len(answered) == 5  # held pages gave the samples the failed ones could not
    served = [i for i in items if i.status == "completed" and not i.llm_calls]
    assert len(served) == 30 - 5 - len(failed) and \
        all(i.extraction["method"] == "template" for i in served)
    (doc,) = run.templates()
    assert doc["status"] == "active" and doc["asking"] == []


def test_a_page_held_too_long_goes_to_the_llm(shop, fake_llm: FakeLLM) -> None:
    fake_llm.latency = 0.6
    run = shop(owner(), BATCH_TEMPLATE_AUDIT_EVERY=0, BATCH_TEMPLATE_HOLD_SECONDS=0.2)
    items = completed(extract_together(run, products(1, 12)))
    assert all(i.status == "completed" for i in items)
    assert run.stat("hold_timeouts") >= 1
    assert fake_llm.calls == 12  # every page waited past its hold: the LLM answered it


def test_pages_past_the_hold_budget_go_to_the_llm(shop, fake_llm: FakeLLM) -> None:
    fake_llm.latency = 0.3
    one_page = len(item_page(1)) + 100
    run = shop(owner(), BATCH_TEMPLATE_AUDIT_EVERY=0, BATCH_TEMPLATE_HOLD_MAX_BYTES=one_page)
    items = completed(extract_together(run, products(1, 12)))
    assert all(i.status == "completed" for i in items)
    # one page waits; the others would fill Scrapy's scraper slot and are answered meanwhile
    assert run.stat("held") == 1 and run.stat("hold_full") >= 6
    assert fake_llm.calls >= 10


def test_held_pages_are_given_back_unfinished_when_the_crawl_stops(
        shop, fake_llm: FakeLLM) -> None:
    fake_llm.latency = 1.0
    run = shop(owner(), BATCH_TEMPLATE_AUDIT_EVERY=0, BATCH_TEMPLATE_POLL_SECONDS=0.05)
    stopping = []
    run.run.stopped = lambda: bool(stopping)
    results = extract_together(run, products(1, 10), during=lambda: stopping.append(True))
    dropped = [r for r in results if isinstance(r, DropItem)]
    items = [r for r in results if isinstance(r, PageItem)]
    # the 3 pages at the LLM finish; the 7 waiting ones are not extracted (their leases
    # go back to pending when the spider closes) and cost no LLM call
    assert (len(items), len(dropped)) == (3, 7)
    assert fake_llm.calls == 3
    assert run.stat("held_dropped") == 7


@pytest.mark.slow
def test_cancelling_a_batch_drops_its_held_pages_without_asking_the_llm(
        crawl, store: BatchStore, fake_llm: FakeLLM) -> None:
    fake_llm.labelled, fake_llm.latency = True, 3.0
    with TemplateShop() as site:
        urls = [site.url(f"/item/{n}") for n in range(1, 61)]
        spec = parse_batch(urls, SCHEMA, options={"concurrency": 8, "render_js": "never"})
        batch_id = store.create_batch(spec, owner=owner())["_id"]
        # leased a few at a time: the spider checks for a cancel while it still leases
        settings = fake_llm.settings(BATCH_HEURISTICS_ENABLED=True, BATCH_CLAIM_CHUNK=4,
                                     BATCH_CANCEL_CHECK_INTERVAL=0.2)
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(crawl, batch_id=batch_id, settings=settings)
            while fake_llm.calls < 3 and not running.done():  # the samples are being answered
                time.sleep(0.05)
            store.cancel_batch(batch_id)
            # the held pages stop waiting (BATCH_TEMPLATE_HOLD_SECONDS is 300 s, longer than
            # the crawl fixture waits): the crawl ends once the samples' answers are in
            result = running.result()
    assert result.returncode == 0, result.stderr[-3000:]
    assert fake_llm.calls == 3
    counters = store.get_batch(batch_id)["counters"]
    assert counters["cancelled"] + counters["completed"] == 60 and counters["cancelled"] >= 57
    assert "'batch/templates/held_dropped': " in result.stderr


def shop_urls(site: TemplateShop, products: int, listing_every: int) -> list[str]:
    """Product pages (both layouts) with a listing page after every ``listing_every``th, from
    the second on (the first product pages start the host's first template)."""
    urls = []
    for n in range(1, products + 1):
        urls.append(site.url(f"/item/{n}"))
        if n % listing_every == 0 and n > listing_every:
            urls.append(site.url(f"/list/{n // listing_every}"))
    return urls


@pytest.mark.slow
def test_a_crawl_learns_each_shape_of_a_shop_and_its_records_are_the_llms(
        crawl, store: BatchStore, fake_llm: FakeLLM) -> None:
    """A/B product layouts and listing pages of one shop, crawled 8 at a time with templates
    off and on: the same stored records, for a few LLM calls."""
    fake_llm.labelled, fake_llm.latency = True, 0.2
    tenant = owner()
    batches = {}
    with TemplateShop(ab=True) as site:
        urls = shop_urls(site, 80, 8)
        for mode in ("off", "auto"):
            spec = parse_batch(urls, SCHEMA, options={"templates": mode, "concurrency": 8,
                                                      "render_js": "never", "retries": 0})
            batch_id = batches[mode] = store.create_batch(spec, owner=tenant)["_id"]
            calls = fake_llm.calls
            result = crawl(batch_id=batch_id, settings=fake_llm.settings(
                BATCH_HEURISTICS_ENABLED=True, BATCH_TEMPLATE_AUDIT_EVERY=0))
            assert result.returncode == 0, result.stderr[-3000:]
    # A: 3 samples + 2 held-out pages; B (met while A was learned): 2 held-out pages with
    # A's rules; listings: 3 samples + 2 held-out pages, each answer repaired once
    assert fake_llm.calls - calls == 5 + 2 + 10
    off, auto = ({i["url"]: i for i in store.iter_items(batches[mode])} for mode in batches)
    listings = [url for url in urls if "/list/" in url]
    for url in urls:
        before, after = off[url], auto[url]
        assert (after["status"], after.get("data")) == (before["status"], before.get("data"))
        if url in listings:
            assert (after["error"]["code"], before["error"]["code"]) == ("VALIDATION_FAILED",) * 2
        else:
            n = int(url.rsplit("/", 1)[1])
            assert after["status"] == "completed" and {
                k: v for k, v in after["data"].items() if v is not None} == truth(n), url
    unfit = [auto[url] for url in listings if auto[url]["extraction"]["method"] == "template"]
    assert len(unfit) == len(listings) - 5 > 0
    assert all(i["llm_calls"] == 0 and i["extraction"]["template_lacks"] == ["rating"]
               for i in unfit)
    counters = store.get_batch(batches["auto"])["counters"]
    served = [i for i in auto.values() if i["extraction"]["method"] == "template"]
    assert counters["template_pages"] == len(served) == len(urls) - 5 - 2 - 5
    assert counters["templates_learned"] == 3 and counters["llm_calls"] == 17
    docs = TemplateStore(store.db).list(tenant)
    assert sorted((d["status"], d["seeded"], bool(d.get("reason"))) for d in docs) == [
        ("active", False, False), ("active", False, True), ("active", True, False)]


# -- verification ------------------------------------------------------------------------


def badge_page(n: int, badge: str) -> str:
    """A product page with a badge heading that may repeat its colour (an ambiguity)."""
    return item_page(n).replace("</h1>", f'</h1><h2 class="badge">{badge}</h2>', 1)


def test_a_candidate_that_disagrees_on_held_out_pages_is_never_used(
        shop, fake_llm: FakeLLM) -> None:
    run = shop(owner(), BATCH_TEMPLATE_AUDIT_EVERY=0)
    # on the samples the badge repeats the colour: the badge is the first place the colour is
    # found, so the first candidate reads it; from then on the badge says something else
    pages = [(n, badge_page(n, item_truth(n)["colour"] if n <= 3 else "Limited edition"))
             for n in range(1, 16)]
    items = run.extract(pages)
    # page 4 (held out) refutes it: the LLM reads the colour in the specs table
    assert items[3].llm_calls == 1 and items[3].extraction["method"] != "template"
    assert run.stat("refuted") == 1 and run.stat("learned") == 1
    (doc,) = run.templates()
    assert doc["status"] == "active" and doc["attempts"] == 2
    assert "badge" not in doc["rules"]["colour"]["xpath"]
    assert fake_llm.calls == 6  # 3 samples, the refuting page, 2 held-out pages of the second
    for n, item in enumerate(items, 1):
        assert item.status == "completed", item.error
        assert item.data["colour"] == item_truth(n)["colour"], n
    assert [i.extraction["method"] for i in items[6:]] == ["template"] * 9


def test_held_out_pages_that_disagree_every_time_abandon_the_shape(
        shop, fake_llm: FakeLLM) -> None:
    run = shop(owner(), BATCH_TEMPLATE_AUDIT_EVERY=0, BATCH_TEMPLATE_MAX_ATTEMPTS=1)
    pages = [(n, badge_page(n, item_truth(n)["colour"] if n <= 3 else "Limited edition"))
             for n in range(1, 11)]
    items = run.extract(pages)
    (doc,) = run.templates()
    assert doc["status"] == "abandoned"
    assert all(i.llm_calls == 1 and i.extraction["method"] != "template" for i in items)
    assert all(i.data["colour"] == item_truth(n)["colour"] for n, i in enumerate(items, 1))


# -- the dev corpus -------------------------------------------------------------------------


@contextmanager
def serve_pages(pages: dict[str, bytes]) -> Iterator[str]:
    """``pages`` at http://127.0.0.1:<port>/<name>, bytes as saved; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            body = pages.get(self.path.strip("/"))
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def corpus_cases() -> dict[str, dict[str, Any]]:
    dev = CORPUS / "dev"
    return {folder.name: {"page": (folder / "page.html").read_bytes(),
                          "schema": json.loads((folder / "schema.json").read_text()),
                          "expected": json.loads((folder / "expected.json").read_text())}
            for folder in sorted(dev.iterdir()) if folder.is_dir()}


def corpus_scores(store: BatchStore, batch_id: str, cases: dict[str, Any],
                  tmp_path: Path, name: str) -> dict[str, float]:
    items = {int(i["index"]): i for i in store.iter_items(batch_id)}
    predictions = tmp_path / f"{name}.jsonl"
    predictions.write_text("".join(
        json.dumps({"case_id": case_id, "data": items[index].get("data")
                    if isinstance(items[index].get("data"), dict) else {}}) + "\n"
        for index, case_id in enumerate(cases)))
    scored = json.loads(subprocess.run(
        [sys.executable, str(CORPUS / "score.py"), str(CORPUS / "dev"), str(predictions),
         "--json"], capture_output=True, text=True, check=True).stdout)
    return {case_id: scored["per_case"][case_id]["accuracy"] for case_id in cases}


@pytest.mark.slow
@pytest.mark.skipif(not (CORPUS / "dev").is_dir(), reason="no ../shared/corpus/dev")
def test_no_dev_corpus_page_gets_worse(crawl, store: BatchStore, fake_llm: FakeLLM,
                                       tmp_path: Path) -> None:
    """Every case's page, each with its own schema, from one local host (as one site), the
    LLM answering each page's ground truth: with templates on, every page scores what it
    scores with templates off, and none is served by a template (no shape of the corpus has
    the K+2 pages a template needs)."""
    cases = corpus_cases()
    scores = {}
    tenant = owner()
    with serve_pages({case_id: case["page"] for case_id, case in cases.items()}) as base:
        fake_llm.truths = {f"{base}/{case_id}": case["expected"]
                           for case_id, case in cases.items()}
        urls = [{"url": f"{base}/{case_id}", "extraction_schema": case["schema"]}
                for case_id, case in cases.items()]
        for mode in ("off", "auto"):
            spec = parse_batch(urls, None, options={"templates": mode, "render_js": "never",
                                                    "concurrency": 4})
            batch_id = store.create_batch(spec, owner=tenant)["_id"]
            result = crawl(batch_id=batch_id, settings=fake_llm.settings(
                BATCH_HEURISTICS_ENABLED=True))
            assert result.returncode == 0, result.stderr[-3000:]
            counters = store.get_batch(batch_id)["counters"]
            assert counters["pending"] == 0 and counters.get("template_pages", 0) == 0
            scores[mode] = corpus_scores(store, batch_id, cases, tmp_path, mode)
    worse = {c: (scores["off"][c], scores["auto"][c]) for c in cases
             if scores["auto"][c] < scores["off"][c]}
    assert not worse
    # one page of each shape: no template got past learning
    statuses = {d["status"] for d in TemplateStore(store.db).list(tenant)}
    assert statuses <= {"learning", "abandoned"}
