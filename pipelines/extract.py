"""Extract pipeline: the page's structured data first, an LLM for what it lacks.

1. JSON-LD, microdata and OpenGraph are mapped onto the batch schema (list
   pages: every entity of the schema's kind); page heuristics fill what they
   left empty (single-record pages).
2. When the page's markup (JSON-LD, microdata) made a record that satisfies
   the schema (every required field filled and valid) no LLM is called. A
   record guessed from the page's text is completed: when an LLM is
   configured, it is asked for every field still empty or invalid. Either
   way, it is asked for the missing fields only, on the page's compact
   markdown; the values found are kept.
3. LLM values are checked against the page text (grounding). The batch
   option ``grounding``: ``auto`` (default) nulls values that can only be
   copied from a page (numbers, dates, URLs, identifiers such as phone, ISBN,
   SKU) when they are not on it, and flags free text; ``strict`` nulls every
   ungrounded value; ``flag`` only flags.
4. When the LLM fails, the structured record survives: it completes when it
   satisfies the schema on its own (the error noted in ``extraction``), and
   otherwise the item fails with the LLM's code and keeps what was found.

Without an LLM (no ``OPENAI_BASE_URL``/``OPENAI_API_KEY``) a page without
matching structured data fails with EXTRACTION_FAILED. ``duration_ms`` of an
item includes its extraction time; ``llm_ms`` is the part spent waiting for
LLM answers.

Parsing, mapping and schema checks of the page's records run off the reactor
thread; a check past ``BATCH_VALIDATION_TIMEOUT`` fails the item with
VALIDATION_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from scrapy.crawler import Crawler

from batchscraper.exceptions import (
    BudgetExceededError,
    ExtractionError,
    ItemError,
    ValidationFailedError,
)
from batchscraper.extraction.content import (
    PageContent,
    page_content,
    page_metadata,
    prepare_page,
)
from batchscraper.extraction.heuristics import extraction_method
from batchscraper.extraction.validation import RecordChecker, ValidationSettings
from batchscraper.inputs.extraction import kept_formats
from batchscraper.items import PageItem
from batchscraper.jsontypes import JSONValue
from batchscraper.llm.client import load_client
from batchscraper.llm.config import LLMConfig
from batchscraper.llm.extractor import LLMExtractor, PageTask, Usage
from batchscraper.llm.merge import is_empty, merge_record_lists, shape_to_schema
from batchscraper.llm.prompts import leaks_instructions
from batchscraper.run import FREE_FORM_SCHEMA, BatchRun, ItemPlan, batch_run
from batchscraper.store.ledger import LLMLedger
from batchscraper.templates.learning import PageTemplate
from batchscraper.templates.step import TemplateStep
from pipelines.answers import (
    add_usage,
    completed_objects,
    ground_answer,
    list_meta,
    page_index,
    usage_meta,
)
from pipelines.structured import StructuredResult, structured_step, wants_links

logger = logging.getLogger(__name__)


class ExtractPipeline:
    """Fills ``data``, ``evidence``, ``extraction`` and the LLM usage of each page."""

    def __init__(
        self, crawler: Crawler, run: BatchRun, config: LLMConfig, validation: ValidationSettings,
        heuristics: bool = True,
    ) -> None:
        self.crawler = crawler
        self.run = run
        self.config = config
        self.validation = validation
        self.heuristics = heuristics
        # built once per process, before the crawl runs (its ledger's indexes are blocking
        # MongoDB calls); None when no LLM is configured
        self.extractor: LLMExtractor | None = None
        if config.configured:
            ledger = LLMLedger(run.store.db, config.cache_ttl_days)
            ledger.ensure_indexes()
            self.extractor = LLMExtractor(config, load_client(config), ledger, crawler.stats)
        self._budget_reported = False
        self.templates = TemplateStep.from_crawler(crawler, run)  # learned page templates

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ExtractPipeline:
        config = LLMConfig.from_settings(crawler.settings)
        if config.configured:
            logger.info("LLM extraction: model %s at %s", config.model,
                        config.base_url or "the OpenAI API")
        validation = ValidationSettings.from_settings(crawler.settings)
        heuristics = crawler.settings.getbool("BATCH_HEURISTICS_ENABLED", True)
        return cls(crawler, batch_run(crawler), config, validation, heuristics)

    async def close_spider(self) -> None:
        if self.templates is not None:
            await asyncio.to_thread(self.templates.save_hits)

    async def process_item(self, item: PageItem) -> PageItem:
        stored = (item.content or {}).get("markdown") or (item.content or {}).get("text")
        if item.status == "failed" or (item.body is None and not stored):
            return item
        started = time.monotonic()
        try:
            await self._extract(item)
        except ValidationFailedError as exc:  # VALIDATION_TIMEOUT, or a schema that broke
            item.fail(exc.to_dict())
        item.duration_ms = (item.duration_ms or 0) + int((time.monotonic() - started) * 1000)
        return item

    async def _extract(self, item: PageItem) -> None:
        options = self.run.options
        plan = self.run.plan(item.index)
        checker = self.run.checker(self.validation.timeout, plan.own_schema)
        many = options.max_items_per_url > 1
        url = item.final_url or item.url
        kept = kept_formats(plan.formats, plan.mode) if options.store_content else ()
        if item.body is not None and kept:
            item.content = await asyncio.to_thread(page_content, item.body, url, kept)
        if plan.schema is None:
            await self._schemaless(item, plan, checker, url)
            return
        if item.body is not None:
            found = await asyncio.to_thread(structured_step, item.body, url, checker, many,
                                            self.heuristics)
        else:
            found = StructuredResult([] if many else {}, {})
            if not many:
                ask = await asyncio.to_thread(checker.fields_to_ask, {}, True)
                found = StructuredResult({}, {}, ask=frozenset(ask))
        for source, count in Counter(found.evidence.values()).items():
            self._stat(f"extract/fields/{source}", count)
        # what was found stays on the item if a schema check below fails
        item.data, item.evidence = found.data or None, found.evidence or None
        if found.failed is not None:
            raise found.failed
        if many:
            await self._list_page(item, checker, found, url, plan.prompt)
        else:
            await self._single_page(item, checker, found, url, plan.prompt)

    # -- no schema: a free-form object from the LLM, or the page's metadata ---------------

    async def _schemaless(
        self, item: PageItem, plan: ItemPlan, checker: RecordChecker, url: str
    ) -> None:
        if plan.mode == "content":
            if item.body is not None:
                item.data = await asyncio.to_thread(page_metadata, item.body, url)
            item.extraction = {"method": "content", "schema": None}
            return
        extractor = self.extractor
        if extractor is None:  # refused at submit; a stored batch can outlive its LLM
            item.fail(ExtractionError(
                "a prompt-only extraction needs an LLM endpoint; none is configured"
            ).to_dict())
            return
        self._stat("llm/pages")
        page = await self._page(item, url, FREE_FORM_SCHEMA)
        task = self._task(item, url, page, None, plan.prompt)
        usage = Usage()
        try:
            value = await extractor.extract(task, lambda value: [], usage)
        except ItemError as exc:
            await self._llm_failed(item, exc, checker, {}, {}, usage)
            return
        finally:
            add_usage(item, usage)
        leaked = sorted(name for name, v in value.items() if leaks_instructions(v))
        data = {name: v for name, v in value.items() if name not in leaked}
        item.data = data or None
        item.evidence = dict.fromkeys(data, "llm") or None
        item.extraction = {"method": "llm", "schema": None, **usage_meta(usage)}
        if leaked:
            item.extraction["leaked"] = leaked
            self._stat("llm/leaks", len(leaked))

    # -- one record per page ---------------------------------------------------------

    async def _single_page(
        self, item: PageItem, checker: RecordChecker, found: StructuredResult,
        url: str, prompt: str | None,
    ) -> None:
        data, evidence = dict(found.data), dict(found.evidence)
        ask = set(found.ask)
        template = None if self.templates is None else \
            await self.templates.fit(item, url, checker, ask, data, evidence)
        if template is not None and template.served:
            return
        try:
            await self._ask_llm(item, checker, data, evidence, ask, url, prompt, template)
        finally:
            if self.templates is not None:  # an answer the template's learning claimed
                await self.templates.unanswered(template)

    async def _ask_llm(
        self, item: PageItem, checker: RecordChecker, data: dict[str, Any],
        evidence: dict[str, str], ask: set[str], url: str, prompt: str | None,
        template: PageTemplate | None,
    ) -> None:
        """The LLM completes the record; its answer teaches or checks the page's template."""
        extractor = self.extractor
        if not ask or extractor is None:
            self._structured_only(item, checker, data, evidence)
            return
        self._stat("llm/pages")
        kept = await asyncio.to_thread(checker.valid_values, data, ask)
        # objects the page filled in part (an offer without its stock state): the LLM
        # completes them, their values stay
        partial = {name: value for name, value in data.items() if name in ask
                   and isinstance(value, dict) and not is_empty(value)}
        page = await self._page(item, url, checker.schema)
        task = self._task(item, url, page, checker.sub_schema(ask), prompt,
                          known={**kept, **partial} or None)

        def check(value: Any) -> list[str]:
            return checker.error_lines([{**kept, **value}], ask)

        usage = Usage()
        try:
            value = await extractor.extract(task, check, usage)
        except ItemError as exc:
            await self._llm_failed(item, exc, checker, data, evidence, usage)
            return
        finally:
            add_usage(item, usage)
        await self._budget_spent_on_repair(item, usage)
        answered = {k: v for k, v in value.items() if k in ask}
        meta = ground_answer(answered, page_index(page, checker.schema), checker.schema,
                             self.run.options.grounding, self._stat)
        # empty answers are dropped, except a null for a required field that allows it
        filled = {k: v for k, v in answered.items()
                  if not is_empty(v) or (v is None and k in checker.required)}
        filled = shape_to_schema(filled, checker.schema)
        completed = await asyncio.to_thread(completed_objects, checker, partial, shape_to_schema(
            {name: answered.get(name) for name in partial}, checker.schema))
        filled.update(completed)
        item.data = checker.with_unstated_nulls({
            name: ({**kept, **filled})[name] for name in checker.properties
            if name in kept or name in filled})
        item.evidence = {**{k: evidence[k] for k in kept if k in evidence},
                         **{k: "llm" for k, v in filled.items() if v is not None},
                         **{k: f"{evidence[k]}+llm" if k in evidence else "llm"
                            for k in completed}}
        found_by = extraction_method({k: evidence[k] for k in kept if k in evidence})
        item.extraction = {"method": f"{found_by}+llm" if kept else "llm",
                           "llm_fields": sorted(ask), **usage_meta(usage), **meta}
        if self.templates is not None and template is not None:
            item.extraction.update(
                await self.templates.answered(template, filled, meta["grounded"], checker))

    def _structured_only(self, item: PageItem, checker: RecordChecker, data: dict[str, Any],
                         evidence: dict[str, str]) -> None:
        if not data:
            self._stat("extract/empty")
            item.fail(ExtractionError(
                "no structured data in the page (JSON-LD, microdata, OpenGraph) matches the schema"
            ).to_dict())
            return
        item.data = checker.with_unstated_nulls(data)
        item.evidence = evidence
        item.extraction = {"method": extraction_method(evidence)}

    # -- list pages ------------------------------------------------------------------

    async def _list_page(
        self, item: PageItem, checker: RecordChecker, found: StructuredResult,
        url: str, prompt: str | None,
    ) -> None:
        limit = self.run.options.max_items_per_url
        records = list(found.data)[:limit]
        evidence = dict(found.evidence)
        valid = records and not await asyncio.to_thread(checker.error_lines, records)
        enough = len(records) >= min(limit, found.visible or len(records))
        extractor = self.extractor
        if (valid and enough) or extractor is None:
            if not records:
                self._structured_only(item, checker, {}, {})
                return
            item.data, item.evidence = records, evidence
            item.extraction = {"method": "structured", **list_meta(records, found, limit)}
            return
        self._stat("llm/pages")
        page = await self._page(item, url, checker.schema)
        task = self._task(item, url, page, checker.schema, prompt, max_records=limit)
        usage = Usage()
        try:
            value = await extractor.extract(task, checker.error_lines, usage)
        except ItemError as exc:
            await self._llm_failed(item, exc, checker, records, evidence, usage)
            assert item.extraction is not None
            item.extraction.update(list_meta(records, found, limit))
            return
        finally:
            add_usage(item, usage)
        await self._budget_spent_on_repair(item, usage)
        index = page_index(page, checker.schema)
        llm_records = []
        ungrounded = nulled = 0
        for record in value:
            meta = ground_answer(record, index, checker.schema, self.run.options.grounding,
                                 self._stat)
            ungrounded += len(meta.get("ungrounded", []))
            nulled += len(meta.get("nulled", []))
            llm_records.append(shape_to_schema(
                {k: v for k, v in record.items() if not is_empty(v)}, checker.schema))
        merged = merge_record_lists([records, llm_records], limit)
        item.data = merged
        item.evidence = {**dict.fromkeys(checker.properties, "llm"), **evidence}
        item.extraction = {"method": f"{extraction_method(evidence)}+llm" if records else "llm",
                           **usage_meta(usage), **list_meta(merged, found, limit)}
        if ungrounded:
            item.extraction["ungrounded_values"] = ungrounded
        if nulled:
            item.extraction["nulled_values"] = nulled

    # -- helpers -----------------------------------------------------------------------

    async def _page(self, item: PageItem, url: str, schema: Mapping[str, object]) -> PageContent:
        if item.body is None:
            text = (item.content or {}).get("markdown") or (item.content or {}).get("text") or ""
            return PageContent(markdown=text, text=text)
        return await asyncio.to_thread(prepare_page, item.body, url, wants_links(schema))

    def _task(self, item: PageItem, url: str, page: PageContent, schema: dict[str, Any] | None,
              prompt: str | None, **extra: Any) -> PageTask:
        options = self.run.options
        return PageTask(
            batch_id=item.batch_id, url=url, markdown=page.markdown, schema=schema,
            prompt=prompt, max_calls=options.max_llm_calls,
            max_cost_usd=options.max_cost_usd, cache=options.store_content, **extra,
        )

    async def _llm_failed(self, item: PageItem, exc: ItemError, checker: RecordChecker,
                          data: JSONValue, evidence: dict[str, str], usage: Usage) -> None:
        """The structured record survives: complete when it is valid alone, else fail."""
        if isinstance(exc, BudgetExceededError):
            await self._budget_error(item)
        if isinstance(data, dict):
            data = checker.with_unstated_nulls(data) if data else data
        item.data = data or None
        item.evidence = evidence or None
        item.extraction = {"method": extraction_method(evidence) if data else "llm",
                           "llm_error": exc.to_dict(), **usage_meta(usage)}
        records = data if isinstance(data, list) else [data]
        if data and not await asyncio.to_thread(checker.error_lines, records):
            self._stat("llm/failed_structured_kept")
            return
        item.fail(exc.to_dict())

    async def _budget_spent_on_repair(self, item: PageItem, usage: Usage) -> None:
        if usage.repair_skipped == "budget":
            await self._budget_error(item)

    async def _budget_error(self, item: PageItem) -> None:
        """The batch-level error, set once per process when the budget runs out."""
        if self._budget_reported:
            return
        self._budget_reported = True
        await asyncio.to_thread(self.run.store.set_batch_error, item.batch_id, {
            "code": BudgetExceededError.code,
            "message": "the LLM budget (max_llm_calls / max_cost_usd) is spent",
            "retryable": False,
        })


    def _stat(self, key: str, value: int = 1) -> None:
        stats = self.crawler.stats
        assert stats is not None
        stats.inc_value(f"batch/{key}", value)
