"""Learned templates: page shapes, selector learning, and the extract pipeline using them.

The component tests run the extract pipeline in-process on the template shop's
pages (``batchscraper/demo/shop.py``: no structured data), against the embedded
MongoDB-wire server and the fake OpenAI-compatible server answering from each
page; one end-to-end crawl checks the stored records and batch counters.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from scrapy.crawler import Crawler
from scrapy.utils.test import get_crawler

from batchscraper.demo.shop import PRODUCT_SCHEMA as SCHEMA
from batchscraper.demo.shop import TemplateShop, item_page, item_truth, list_page
from batchscraper.inputs import parse_batch
from batchscraper.items import PageItem
from batchscraper.llm.client import OpenAIChatClient
from batchscraper.run import BatchRun
from batchscraper.store import BatchStore
from batchscraper.store.writes import SerialWriter
from batchscraper.templates.selectors import Sample, apply_rules, learn_rules
from batchscraper.templates.signature import page_shape, page_tree, similarity
from batchscraper.templates.store import TemplateStore
from pipelines.extract import ExtractPipeline
from tests.conftest import batch_id_from
from tests.fakellm import FakeLLM, fake_llm_fixture, fake_llm_server_fixture  # noqa: F401
from tests.test_pipelines import DummySpider, Recorded, project

ASKED = ("colour", "material", "rating")  # what the page heuristics cannot find
HOST = "shop.test"


def truth(n: int) -> dict[str, Any]:
    return {k: v for k, v in item_truth(n).items() if v is not None}


# -- page shape and selectors -------------------------------------------------------------


def test_page_shape_keeps_a_template_together_and_listings_apart() -> None:
    first = page_shape(page_tree(item_page(1)))
    for n in range(2, 60):  # promo blocks, missing material, reordered sections
        assert similarity(first, page_shape(page_tree(item_page(n)))) >= 0.75, n
    assert similarity(first, page_shape(page_tree(list_page(1)))) < 0.3
    # the changed template is still the same page shape: its old selectors miss there
    assert similarity(first, page_shape(page_tree(item_page(600, changed=True)))) >= 0.75


def test_learned_selectors_are_anchored_and_reproduce_unseen_pages() -> None:
    props = {name: SCHEMA["properties"][name] for name in ASKED}
    samples = [Sample(page_tree(item_page(n)), {k: item_truth(n)[k] for k in ASKED})
               for n in (1, 2, 3)]
    rules = learn_rules(samples, props)
    assert set(rules) == set(ASKED)
    assert rules["colour"]["xpath"] == "//th[normalize-space()='Colour']/following-sibling::td[1]"
    assert "rating" in rules["rating"]["xpath"] and rules["rating"]["regex"].startswith("^Rating:")
    assert not any("[" in rule["xpath"].split("]")[-1] for rule in rules.values())
    for n in range(4, 300):  # other lengths, no material, reordered sections
        assert apply_rules(page_tree(item_page(n)), rules) == {k: item_truth(n)[k]
                                                                for k in ASKED}, n


def test_a_value_no_selector_reproduces_is_not_learned() -> None:
    props = {name: SCHEMA["properties"][name] for name in ASKED}
    answers = [{k: item_truth(n)[k] for k in ASKED} for n in (1, 2, 3)]
    answers[1]["colour"] = "Ultraviolet"  # not what the page says: no selector gives it
    samples = [Sample(page_tree(item_page(n)), a) for n, a in zip((1, 2, 3), answers, strict=True)]
    rules = learn_rules(samples, props)
    assert "colour" not in rules and set(rules) == {"material", "rating"}


# -- the extract pipeline in-process ----------------------------------------------------------


@dataclass
class Shop:
    """A stored batch of shop pages and the extract pipeline of one worker."""

    crawler: Crawler
    pipeline: ExtractPipeline
    run: BatchRun
    store: BatchStore

    def extract(self, pages: list[tuple[int, str]]) -> list[PageItem]:
        """Run the pipeline over ``(n, html)`` pages one after the other."""
        async def work() -> list[PageItem]:
            out = []
            for index, (n, html) in enumerate(pages):
                item = PageItem(batch_id=self.run.batch_id, index=index,
                                url=f"http://{HOST}/item/{n}", body=html)
                out.append(await self.pipeline.process_item(item))
            await self.pipeline.close_spider()
            # the process-wide client's connections belong to this event loop: close them
            client = self.pipeline.extractor.client if self.pipeline.extractor else None
            if isinstance(client, OpenAIChatClient) and client._client is not None:
                await client._client.close()
                client._client = None
            return out
        return asyncio.run(work())

    def stat(self, key: str) -> Any:
        assert self.crawler.stats is not None
        return self.crawler.stats.get_value(f"batch/templates/{key}", 0)

    def templates(self) -> list[dict[str, Any]]:
        return TemplateStore(self.store.db).list(self.run.batch.get("owner"))


@pytest.fixture(name="shop")
def shop_fixture(store: BatchStore, mongo_uri: str, fake_llm: FakeLLM
                 ) -> Iterator[Callable[..., Shop]]:
    writers: list[SerialWriter] = []
    fake_llm.labelled = True

    def build(owner: str, pages: int = 40, **settings: Any) -> Shop:
        options = settings.pop("options", None)
        urls = [f"http://{HOST}/item/{n}" for n in range(pages)]
        spec = parse_batch(json.dumps(urls), json.dumps(SCHEMA), options=options)
        batch = store.create_batch(spec, owner=owner)
        writer = SerialWriter(store, flush_items=1, flush_seconds=0.01)
        writers.append(writer)
        recorded = Recorded()
        run = BatchRun(batch_id=batch["_id"], batch=batch, options=spec.options, store=store,
                       writer=writer, worker_id=f"tests:{uuid.uuid4().hex[:6]}", inflight={},
                       escalation_for=recorded.escalation_for, stop=recorded.stop)
        crawler = get_crawler(DummySpider, project(MONGO_URI=mongo_uri,
                                                   **fake_llm.settings(**{
                                                       "BATCH_HEURISTICS_ENABLED": True,
                                                       **settings})))
        spider = DummySpider.from_crawler(crawler)
        spider.run = run
        crawler.spider = spider
        return Shop(crawler, ExtractPipeline.from_crawler(crawler), run, store)

    yield build
    for writer in writers:
        writer.close()


def owner() -> str:
    return f"owner-{uuid.uuid4().hex[:8]}"


def test_learns_verifies_then_extracts_without_the_llm(shop, fake_llm: FakeLLM) -> None:
    tenant = owner()
    run = shop(tenant, BATCH_TEMPLATE_AUDIT_EVERY=0)
    items = run.extract([(n, item_page(n)) for n in range(1, 31)])
    # 3 samples + 2 held-out pages went to the LLM; the other 25 pages did not
    assert fake_llm.calls == 5
    assert [i.llm_calls for i in items] == [1] * 5 + [0] * 25
    assert items[4].extraction["template_learned"] == items[5].extraction["template"]
    for n, item in enumerate(items, 1):
        assert item.status == "completed", item.error
        assert {k: v for k, v in item.data.items() if v is not None} == truth(n), n
    served = items[5:]
    assert all(i.extraction["method"] == "template" for i in served)
    assert all(i.evidence[f] == "template" for i in served for f in ASKED if f in i.data)
    assert served[0].evidence["name"] == "heading"  # the page heuristics' fields stay theirs
    (doc,) = run.templates()
    assert doc["status"] == "active" and doc["hits"] == 25 and doc["owner"] == tenant
    assert (run.stat("learned"), run.stat("pages")) == (1, 25)


def test_listing_pages_of_the_host_get_their_own_template(shop, fake_llm: FakeLLM) -> None:
    run = shop(owner())
    run.extract([(n, item_page(n)) for n in range(1, 8)] + [(1, list_page(1))])
    docs = run.templates()
    assert len(docs) == 2
    assert sorted(d["status"] for d in docs) == ["active", "learning"]


def test_a_miss_falls_back_to_the_llm_and_a_changed_site_is_relearned(
        shop, fake_llm: FakeLLM) -> None:
    run = shop(owner(), BATCH_TEMPLATE_AUDIT_EVERY=0)
    run.extract([(n, item_page(n)) for n in range(1, 11)])
    calls = fake_llm.calls
    assert calls == 5
    # the site renames the rating's class: the old selector misses, the LLM answers
    changed = run.extract([(n, item_page(n, changed=True)) for n in range(100, 120)])
    for n, item in enumerate(changed, 100):
        assert item.status == "completed", item.error
        assert {k: v for k, v in item.data.items() if v is not None} == truth(n), n
    misses = [i for i in changed if i.extraction.get("template_miss")]
    assert len(misses) == 3  # BATCH_TEMPLATE_RETIRE_MIN bad outcomes retire it
    docs = {d["status"]: d for d in run.templates()}
    assert set(docs) == {"retired", "active"}
    assert docs["retired"]["misses"] == 3 and docs["retired"]["reason"]
    assert docs["active"]["version"] == 2
    # 3 misses, then 3 samples + 2 held-out pages of the new template, then no more calls
    assert fake_llm.calls - calls == 8
    assert all(i.llm_calls == 0 for i in changed[8:])
    assert (run.stat("retired"), run.stat("learned")) == (1, 2)


def test_audits_compare_with_the_llm_and_space_out_while_they_agree(
        shop, fake_llm: FakeLLM) -> None:
    # the template is read again for every page: each audit's outcome sets the next gap
    run = shop(owner(), BATCH_TEMPLATE_AUDIT_EVERY=1, BATCH_TEMPLATE_AUDIT_MAX_EVERY=8,
               BATCH_TEMPLATE_POLL_SECONDS=0)
    # the 12th page the template fits is answered wrongly (a value that is on the page)
    fake_llm.truths[f"http://{HOST}/item/17"] = {**item_truth(17), "colour": "Oakline Chair 17"}
    items = run.extract([(n, item_page(n)) for n in range(1, 46)])
    fitted = items[5:]  # after 3 samples and 2 held-out pages
    audited = [k for k, item in enumerate(fitted, 1) if "template_audit" in item.extraction]
    # the 2 held-out pages agreed: gap 4, then doubled per agreeing audit (at most 8); the
    # disagreement brings it back to 1
    assert audited == [4, 12, 13, 15, 19, 27, 35]
    verdicts = [fitted[k - 1].extraction["template_audit"]["agreed"] for k in audited]
    assert verdicts == [True, False, True, True, True, True, True]
    assert all(fitted[k - 1].llm_calls == 1 and fitted[k - 1].extraction["method"] != "template"
               for k in audited)
    assert fake_llm.calls == 5 + 7
    (doc,) = run.templates()
    assert (doc["audits"], doc["disagreements"], doc["status"]) == (7, 1, "active")
    assert doc["streak"] == 5 and (run.stat("audits"), run.stat("disagreements")) == (7, 1)


def test_a_later_batch_reuses_templates_of_its_owner_only(shop, fake_llm: FakeLLM) -> None:
    tenant = owner()
    shop(tenant).extract([(n, item_page(n)) for n in range(1, 8)])
    fake_llm.reset()
    fake_llm.labelled = True
    again = shop(tenant).extract([(n, item_page(n)) for n in range(200, 210)])
    assert fake_llm.calls == 0
    assert all(i.extraction["method"] == "template" for i in again)
    other = shop(owner())
    other.extract([(n, item_page(n)) for n in range(200, 210)])
    assert fake_llm.calls == 5  # owner B learns its own; A's template never serves B
    assert len(other.templates()) == 1


def test_templates_off_and_only(shop, fake_llm: FakeLLM) -> None:
    tenant = owner()
    off = shop(tenant, options={"templates": "off"})
    assert all(i.llm_calls == 1 for i in off.extract([(n, item_page(n)) for n in range(1, 9)]))
    assert off.templates() == []
    only = shop(tenant, options={"templates": "only"})
    # no template yet: "only" learns one from the LLM, then never asks it per page
    items = only.extract([(n, item_page(n)) for n in range(1, 9)] + [(1, list_page(1))])
    assert [i.llm_calls for i in items[:8]] == [1] * 5 + [0] * 3
    listing = items[8]
    assert listing.status == "failed" and listing.llm_calls == 0
    assert (listing.error["code"], listing.error["retryable"]) == ("TEMPLATE_MISS", True)


def test_the_option_is_checked() -> None:
    from batchscraper.exceptions import InvalidOptionError
    from batchscraper.inputs import parse_options
    assert parse_options({"templates": "only"}).templates == "only"
    with pytest.raises(InvalidOptionError) as raised:
        parse_options({"templates": "sometimes"})
    assert raised.value.code == "INVALID_OPTION" and "templates" in raised.value.message


# -- end to end ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_crawl_counts_template_pages(crawl, store: BatchStore, fake_llm: FakeLLM) -> None:
    fake_llm.labelled = True
    with TemplateShop() as site:
        urls = [site.url(f"/item/{n}") for n in range(1, 41)]
        result = crawl(urls=",".join(urls), schema=json.dumps(SCHEMA), render_js="never",
                       concurrency=1, settings=fake_llm.settings(
                           BATCH_TEMPLATE_AUDIT_EVERY=2,
                           # one page in the pipeline at a time: learning is done in 5 pages
                           SCRAPER_SLOT_MAX_ACTIVE_SIZE=1))
    assert result.returncode == 0, result.stderr[-3000:]
    batch_id = batch_id_from(result)
    batch = store.get_batch(batch_id)
    items = list(store.iter_items(batch_id))
    assert all(i["status"] == "completed" for i in items)
    counters = batch["counters"]
    template_pages = [i for i in items if i["extraction"]["method"] == "template"]
    audits = [i for i in items if "template_audit" in i["extraction"]]
    assert counters["template_pages"] == len(template_pages)
    assert counters["templates_learned"] == 1
    assert counters.get("template_audits", 0) == len(audits)
    assert counters.get("template_disagreements", 0) == 0
    assert counters["llm_calls"] == fake_llm.calls == 40 - len(template_pages)
    # with one page in the pipeline at a time: 3 samples, 2 held-out pages, the rest served
    assert len(template_pages) + len(audits) == 35
    (template_id,) = batch["templates"]  # the one this batch learned (other tests' stay)
    doc = TemplateStore(store.db).get(template_id)
    assert doc is not None and doc["hits"] == 35  # saved when the crawl closed
    for item in template_pages:
        n = int(item["url"].rsplit("/", 1)[1])
        assert {k: v for k, v in item["data"].items() if v is not None} == truth(n)
        assert item["extraction"]["template"] and item["llm_calls"] == 0
        assert item["evidence"]["colour"] == "template"


@pytest.mark.slow
def test_two_processes_on_one_batch_learn_the_template_once(
        crawl, store: BatchStore, fake_llm: FakeLLM) -> None:
    fake_llm.labelled = True
    tenant = owner()
    with TemplateShop() as site:
        urls = [site.url(f"/item/{n}") for n in range(1, 41)]
        spec = parse_batch(urls, SCHEMA, options={"concurrency": 2, "render_js": "never"})
        batch_id = store.create_batch(spec, owner=tenant)["_id"]
        # small leases, so both processes meet the new page shape from their first pages
        settings = fake_llm.settings(BATCH_HEURISTICS_ENABLED=True, BATCH_CLAIM_CHUNK=2,
                                     BATCH_TEMPLATE_AUDIT_EVERY=0,
                                     SCRAPER_SLOT_MAX_ACTIVE_SIZE=1)
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda _: crawl(batch_id=batch_id, settings=settings),
                                    range(2)))
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    assert sum("Template tpl_" in r.stderr and " learned: " in r.stderr for r in results) == 1
    batch = store.get_batch(batch_id)
    (doc,) = TemplateStore(store.db).list(tenant)  # the rival a race created was removed
    assert doc["status"] == "active" and doc["attempts"] == 1
    assert batch["counters"]["templates_learned"] == 1
    assert batch["templates"] == {doc["_id"]: {
        "learned": 1, "pages": batch["counters"]["template_pages"]}}
    items = list(store.iter_items(batch_id))
    assert batch["counters"]["completed"] == 40
    scraped = [re.search(r"'item_scraped_count': (\d+)", r.stderr) for r in results]
    assert all(found and int(found.group(1)) > 0 for found in scraped)  # both did work
    served = [i for i in items if i["extraction"]["method"] == "template"]
    assert served and {i["extraction"]["template"] for i in served} == {doc["_id"]}
    for item in items:
        n = int(item["url"].rsplit("/", 1)[1])
        assert {k: v for k, v in item["data"].items() if v is not None} == truth(n), n
    assert batch["counters"]["llm_calls"] == fake_llm.calls == 40 - len(served)
    # the workers share the template's claims: 3 samples and 2 held-out pages in all
    assert fake_llm.calls == 5
