"""The batch one crawl works, typed: what the spider shares with its pipelines and extensions.

The spider opens (or creates) the batch in its ``from_crawler`` and builds a
:class:`BatchRun`; Scrapy creates the spider before the extensions and the item
pipelines, so their ``from_crawler`` takes it with :func:`batch_run` instead of
reaching into ``crawler.spider``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

from batchscraper.extraction.validation import RecordChecker, checker_for
from batchscraper.inputs import BatchOptions
from batchscraper.inputs.extraction import extraction_mode
from batchscraper.jsontypes import Document, JSONObject
from batchscraper.store import BatchStore
from batchscraper.store.writes import SerialWriter

if TYPE_CHECKING:
    from scrapy import Request

    from batchscraper.items import PageItem


#: what a record without a schema is checked against (its size is bounded separately)
FREE_FORM_SCHEMA: JSONObject = {"type": "object"}


@dataclass(frozen=True)
class ItemPlan:
    """How one item is extracted (see :mod:`batchscraper.inputs.extraction`)."""

    schema: JSONObject | None
    prompt: str | None
    formats: tuple[str, ...]
    mode: str  # schema | prompt | content
    own_schema: JSONObject | None = None  # the URL's own extraction_schema


@dataclass
class BatchRun:
    """One crawl of one batch: its stored document and options, the store, and this worker."""

    batch_id: str
    batch: dict[str, Any]  # the batch document as this crawl opened it
    options: BatchOptions
    store: BatchStore
    writer: SerialWriter  # every store write of the crawl goes through it, in order
    worker_id: str
    inflight: dict[int, Document]  # leased items being worked, by index
    # the spider's own decisions: re-render an item in the browser, and stop the crawl
    escalation_for: Callable[[PageItem], Request | None]
    stop: Callable[[str], None]
    stopped: Callable[[], bool] = lambda: False  # the spider stops (stop was called)
    _checker: RecordChecker | None = field(default=None, init=False, repr=False)

    @property
    def schema(self) -> JSONObject | None:
        """The batch's schema; None for a prompt-only or content-only batch."""
        schema = self.batch.get("schema")
        return dict(schema) if isinstance(schema, dict) else None

    @property
    def prompt(self) -> str | None:
        prompt = self.batch.get("prompt")
        return prompt if isinstance(prompt, str) else None

    @property
    def reextract_from(self) -> str | None:
        """The batch whose stored pages this one extracts again (no fetching), if any."""
        source = self.batch.get("reextract_from")
        return source if isinstance(source, str) else None

    def plan(self, index: int) -> ItemPlan:
        """How item ``index`` is extracted: its URL's own options, else the batch's."""
        doc = self.inflight.get(index) or {}
        own = doc.get("request")  # the URL's own options, if it has some
        if not isinstance(own, dict):
            own = {}
        schema = own.get("extraction_schema") or self.schema
        prompt = own.get("extraction_prompt") or self.prompt
        formats = tuple(own.get("formats") or self.options.formats)
        return ItemPlan(schema=schema, prompt=prompt, formats=formats,
                        mode=extraction_mode(schema, prompt),
                        own_schema=own.get("extraction_schema"))

    def checker(self, timeout: float | None, schema: JSONObject | None = None
                ) -> RecordChecker:
        """The compiled checker of ``schema`` (default: the batch's), built once per crawl.

        A batch or URL without a schema is checked as a free-form object.
        ``ValidationFailedError`` when the stored schema cannot be compiled
        (raised again for every item that asks).
        """
        if schema is not None:  # a URL's own schema (cached by checker_for)
            return checker_for(self.batch_id, schema, timeout)
        if self._checker is None:
            self._checker = checker_for(self.batch_id, self.schema or FREE_FORM_SCHEMA, timeout)
        return self._checker

    def item_done(self, index: int) -> None:
        """An item's record is written: it no longer holds a lease of this worker."""
        self.inflight.pop(index, None)


def batch_run(crawler: Crawler) -> BatchRun:
    """The crawl's :class:`BatchRun`; ``NotConfigured`` for a crawl of another spider."""
    run = getattr(crawler.spider, "run", None)
    if not isinstance(run, BatchRun):
        raise NotConfigured("only the batch spider runs batchscraper's components")
    return run
