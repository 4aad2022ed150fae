"""The extract pipeline's use of templates: match a page, extract it, or hold it back.

:meth:`TemplateStep.fit` runs before the LLM would be asked for a page's
``fields_to_ask``. It finds the page's template by key (owner, host, schema
fingerprint) and shape, and:

- an ``active`` template whose rules cover the asked fields extracts them; the
  record is checked (required fields filled, schema valid) and the page is
  done without an LLM call (``extraction.method: "template"``). A template
  that reads a required field absent (the LLM found it on none of the shape's
  pages: they do not fit the schema) gives its pages the record the LLM gave
  them, which fails validation (``extraction.template_lacks``). Some pages are
  audits (:meth:`TemplateSettings.audit_gap`: the gap doubles with each
  agreeing comparison in a row): the LLM is asked as well and its answer
  compared. A page the template cannot fill is a miss and goes to the LLM;
  misses and audit disagreements over a sliding window retire the template.
- a page of a ``learning`` template goes to the LLM when the template still
  needs a sample (it claims one); its grounded answer is a sample. From
  ``BATCH_TEMPLATE_SAMPLES`` samples one worker (a lease) learns rules, which
  become a candidate (``verifying``). Rules that cannot serve the shape's pages
  (a required field the LLM never found: the pages do not fit the schema; a
  field no selector reproduces) are not proposed: learning tries again with
  one more sample or gives up (``abandoned``: its pages go to the LLM).
- a page of a ``verifying`` template goes to the LLM too, when the candidate
  still needs a held-out page, and is compared: ``BATCH_TEMPLATE_VERIFY_PAGES``
  agreeing pages make the candidate active; a disagreement drops it and
  learning starts again with that page as one more sample, at most
  ``BATCH_TEMPLATE_MAX_ATTEMPTS`` times.
- the shape's other pages are held (:mod:`.holds`) until the template changes,
  then matched again, at most ``BATCH_TEMPLATE_HOLD_SECONDS`` (then the LLM
  answers them). When the crawl stops (cancel, shutdown) a held page is given
  back unfinished (dropped here; its lease is released, a later run does it).
- a page of a new shape starts from another shape's rules, or waits for another
  shape's learning (:mod:`.siblings`): an A/B layout costs its held-out pages.

What the LLM's answers then do (samples, candidates, verdicts, audits) is
:mod:`.learning`'s. A worker trusts its read of a host's active templates for
``BATCH_TEMPLATE_POLL_SECONDS`` and counts their hits in memory (saved every
poll and at close), so a served page costs no MongoDB round trip.

The batch option ``templates``: ``auto`` (default), ``off``, or ``only``:
once a host has an active template for the schema, a page that no active
template fits fails with TEMPLATE_MISS instead of going to the LLM.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem

from batchscraper.exceptions import TemplateMissError
from batchscraper.extraction.validation import RecordChecker
from batchscraper.items import PageItem
from batchscraper.jsontypes import JSONObject
from batchscraper.llm.merge import is_empty, shape_to_schema
from batchscraper.run import BatchRun
from batchscraper.templates.holds import TemplateHolds
from batchscraper.templates.learning import PageTemplate, TemplateLearner, lacking
from batchscraper.templates.selectors import read_values
from batchscraper.templates.settings import TemplateSettings
from batchscraper.templates.siblings import learning_sibling, sibling_rules
from batchscraper.templates.signature import (
    page_shape,
    page_tree,
    schema_fingerprint,
    similarity,
    site_of,
)
from batchscraper.templates.store import TemplateDocument, TemplateKey, TemplateStore

if TYPE_CHECKING:
    from lxml.html import HtmlElement

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PageShape:
    """What matching reads of a page once, however often it is matched."""

    html: str
    url: str
    tree: HtmlElement
    shape: frozenset[int]
    key: TemplateKey


#: what a page is matched with: its shape, checker, asked fields, known values, ``only``
MatchArgs = tuple[PageShape, RecordChecker, frozenset[str], JSONObject, bool]


class TemplateStep:
    """Template matching, extraction and learning for one crawl."""

    def __init__(self, config: TemplateSettings, store: TemplateStore, run: BatchRun,
                 crawler: Crawler | None = None) -> None:
        self.config = config
        self.store = store
        self.run = run
        self.crawler = crawler
        self.stats = crawler.stats if crawler is not None else None
        self.holds = TemplateHolds(config.poll_seconds)
        self._fingerprints: dict[int, str] = {}
        self.learner = TemplateLearner(config, store, run.worker_id, self._stat)
        self._lock = threading.Lock()
        self._creating = threading.Lock()
        # a host's live templates as last read (an active one is trusted for poll_seconds)
        self._live: dict[tuple[str | None, str, str], tuple[float, list[TemplateDocument]]] = {}
        self._since_audit: dict[str, int] = {}  # pages each served here since its last audit
        self._unsaved: dict[str, int] = {}  # ... not yet added to its stored hits
        self._saved_at = time.monotonic()

    @classmethod
    def from_crawler(cls, crawler: Crawler, run: BatchRun) -> TemplateStep | None:
        """None when ``BATCH_TEMPLATES_ENABLED`` is off."""
        config = TemplateSettings.from_settings(crawler.settings)
        if not config.enabled:
            return None
        store = TemplateStore(run.store.db)
        store.ensure_indexes()
        return cls(config, store, run, crawler)

    # -- before the LLM ----------------------------------------------------------------

    async def fit(self, item: PageItem, url: str, checker: RecordChecker, ask: set[str],
                  data: JSONObject, evidence: dict[str, str]) -> PageTemplate | None:
        """The page's template; when ``served``, ``item`` is done (extracted, or failed).

        A page whose template is being learned waits here for the outcome (see the
        module docstring); DropItem when the crawl stops meanwhile.
        """
        mode = self.run.options.templates
        if mode == "off" or item.body is None or not ask:
            return None
        shaped = await asyncio.to_thread(self._shape, item.body, url, checker)
        if shaped is None:
            return None
        args = (shaped, checker, frozenset(ask), data, mode == "only")
        page = await self._matched(args, hold=True)
        if page.claim is not None and self._stopping():  # its answer would come too late
            await self.unanswered(page)
            self._drop(page)
        if page.role == "held":
            page = await self._wait_for_template(page, args, len(item.body))
        if page.role == "miss" and mode == "only":
            self._stat("misses")
            item.fail(TemplateMissError(
                f"no learned template of {site_of(url)} extracts this page").to_dict())
            item.extraction = {"template_miss": page.template_id or True}
            page.role = "served"
        elif page.served:
            self._serve(item, checker, page, data, evidence)
        return page

    async def _wait_for_template(self, page: PageTemplate, args: MatchArgs, size: int
                                 ) -> PageTemplate:
        """Hold the page until its template changes, and match it again; the LLM's after
        ``BATCH_TEMPLATE_HOLD_SECONDS``, or when held pages reach ``BATCH_TEMPLATE_HOLD_MAX_BYTES``
        (Scrapy stops downloading when its scraper slot fills)."""
        if not self.holds.take(size, self.config.hold_max_bytes):
            self._stat("hold_full")
            return await self._matched(args, hold=False)
        self._stat("held")
        deadline = time.monotonic() + self.config.hold_seconds
        waited = None  # the other shape's template this page waits for (once)
        own = None  # its own template, while the page waits for it
        try:
            while page.role == "held":
                waited = page.template_id if page.on_sibling else waited
                own = self.holds.waits_for(None if page.on_sibling else page.template_id, own)
                if not await self.holds.wait(page.template_id or "", page.ticket, page.rev,
                                             deadline, self._revision, self._stopping):
                    if self._stopping():
                        self._drop(page)
                    self._stat("hold_timeouts")
                    return await self._matched(args, hold=False)
                page = await self._matched(args, hold=True, waited=waited)
            return page
        finally:
            self.holds.waits_for(None, own)
            self.holds.give_back(size)

    def _drop(self, page: PageTemplate) -> None:
        """The crawl stops: the page is given back unfinished (its lease is released)."""
        self._stat("held_dropped")
        raise DropItem(f"the crawl stops: {page.url} waited for template {page.template_id} "
                       "and is given back unfinished", "DEBUG")

    async def _matched(self, args: MatchArgs, hold: bool, waited: str | None = None
                       ) -> PageTemplate:
        ticket = self.holds.ticket()
        page = await asyncio.to_thread(self._match, *args, hold, waited)
        page.ticket = ticket
        if page.touched and page.template_id is not None:
            self.holds.changed(page.template_id)
        return page

    async def _revision(self, template_id: str) -> int | None:
        return await asyncio.to_thread(self.store.revision, template_id)

    def _stopping(self) -> bool:
        """The crawl is stopping: cancelled, failed fast, or shut down."""
        if self.run.stopped() or self.crawler is None:
            return self.run.stopped()
        try:
            return not self.crawler.engine.running
        except RuntimeError:  # no engine: the pipeline runs outside a crawl
            return False

    def _shape(self, html: str, url: str, checker: RecordChecker) -> PageShape | None:
        tree = page_tree(html)
        if tree is None:
            return None
        fingerprint = self._fingerprints.get(id(checker))
        if fingerprint is None:
            fingerprint = self._fingerprints[id(checker)] = schema_fingerprint(checker.schema)
        owner = self.run.batch.get("owner")
        key: TemplateKey = {"owner": owner if isinstance(owner, str) else None,
                            "schema_fp": fingerprint, "host": site_of(url)}
        return PageShape(html, url, tree, page_shape(tree), key)

    def _match(self, shaped: PageShape, checker: RecordChecker, ask: frozenset[str],
               data: JSONObject, only: bool, hold: bool, waited: str | None = None
               ) -> PageTemplate:
        live, doc = self._best(shaped, fresh=False)
        if doc is None or doc["status"] != "active":  # learning moves on: read it now
            live, doc = self._best(shaped)
        # "only": once the host has an active template, pages no active one fits are misses
        strict = only and any(other["status"] == "active" for other in live)
        page = PageTemplate("none", html=shaped.html, url=shaped.url, tree=shaped.tree,
                            ask=ask, required=frozenset(checker.required))
        if doc is not None:
            self._dispatch(page, doc, checker, data, hold, strict)
        elif strict:
            page.role = "miss"
        else:
            # this process's pages of a new shape create it once, and the first one claims
            # its answer before a page of another new shape looks for a learning sibling
            with self._creating:
                self._new_shape(page, shaped, checker, data, hold, waited)
        return page

    def _new_shape(self, page: PageTemplate, shaped: PageShape, checker: RecordChecker,
                   data: JSONObject, hold: bool, waited: str | None) -> None:
        """A page no live template fits: it creates its shape's template (with an active
        sibling's rules when they fill it), or waits for a sibling's learning."""
        held_here = self.holds.holding()
        live, doc = self._best(shaped)
        if doc is None:
            seed = sibling_rules(live, page)
            sibling = learning_sibling(live, waited, held_here) \
                if seed is None and hold else None
            if sibling is not None:  # its rules may fit this shape too: wait for them
                page.role, page.on_sibling = "held", True
                page.template_id, page.rev = sibling["_id"], int(sibling.get("rev") or 0)
                return
            doc = self.store.create(shaped.key, shaped.shape, self.run.batch_id,
                                    self.config.similarity, seed)
            self._stat("created")
            if seed is not None:
                self._stat("seeded")
        self._dispatch(page, doc, checker, data, hold, strict=False)

    def _dispatch(self, page: PageTemplate, doc: TemplateDocument, checker: RecordChecker,
                  data: JSONObject, hold: bool, strict: bool) -> None:
        """What the page does for its template ``doc``, by the template's status."""
        page.template_id, page.rev = doc["_id"], int(doc.get("rev") or 0)
        status = doc["status"]
        if status in ("learning", "verifying"):
            self._learning_page(page, doc, checker, hold)
        elif status == "active":
            self._use(page, doc, checker, data)
        elif strict:  # abandoned: this shape cannot be learned
            page.role = "miss"

    def _best(self, shaped: PageShape, fresh: bool = True
              ) -> tuple[list[TemplateDocument], TemplateDocument | None]:
        """The key's live templates, and the one the page's shape fits best (if any);
        unless ``fresh``, as read at most ``poll_seconds`` ago."""
        key = shaped.key
        cache_key = (key["owner"], key["host"], key["schema_fp"])
        read_at, live = self._live.get(cache_key, (0.0, []))
        if fresh or time.monotonic() - read_at > self.config.poll_seconds:
            live = self.store.live(*cache_key)
            self._live[cache_key] = (time.monotonic(), live)
        scored = [(similarity(shaped.shape, doc["shape"]), doc) for doc in live]
        best = max(scored, key=lambda pair: pair[0], default=(0.0, None))
        return live, best[1] if best[0] >= self.config.similarity else None

    def _learning_page(self, page: PageTemplate, doc: TemplateDocument, checker: RecordChecker,
                       hold: bool) -> None:
        """A page of a template being learned: it gives a needed answer, or it is held."""
        attempts = int(doc.get("attempts") or 0)
        if doc["status"] == "learning":
            needed = self.config.samples_needed(attempts) - len(doc.get("samples") or [])
            if needed <= 0:  # the samples are in: learn, if the worker that should did not
                page.touched = self.learner.learn(doc["_id"], checker)
        else:
            needed = self.config.verify_pages - int(doc.get("checked") or 0)
        if hold:
            page.claim = self.store.claim(doc, needed, self.run.worker_id,
                                          self.config.lease_seconds)
            if page.claim is None:
                page.role = "held"
                return
        page.attempt = attempts
        if doc["status"] == "learning":
            page.role = "learn"
        else:
            page.role = "verify"
            rules = doc.get("rules") or {}  # a verifying template's candidate
            page.values = read_values(page.tree, rules, page.ask)
            page.lacks = lacking(rules, page.required & page.ask)

    def _use(self, page: PageTemplate, doc: TemplateDocument, checker: RecordChecker,
             data: JSONObject) -> None:
        rules = doc["rules"] or {}
        values = read_values(page.tree, rules, page.ask) if page.ask <= set(rules) else None
        page.lacks = lacking(rules, page.required & page.ask)
        if values is None or not self._fills(page, values, checker, data):
            page.role = "miss"
            retired = self.store.outcome(doc["_id"], True, "misses", *self.learner.window())
            self.learner.retired(doc["_id"], retired)
            self._live.clear()  # a miss may be the site changing: trust no cached template
            return
        page.values = values
        page.role = "audit" if self._hit(doc) else "served"

    @staticmethod
    def _fills(page: PageTemplate, values: JSONObject, checker: RecordChecker,
               data: JSONObject) -> bool:
        """The template's values fill the page's required fields (but those it reads absent:
        the page does not fit the schema, as the LLM said of its shape) and are valid."""
        present = {k: v for k, v in values.items() if not is_empty(v)}
        if any(name not in present for name in (page.required & page.ask) - page.lacks):
            return False
        kept = checker.valid_values(data, set(page.ask))
        record = {**kept, **present, **dict.fromkeys(page.lacks)}
        return not checker.error_lines([record], set(present))

    def _hit(self, doc: TemplateDocument) -> bool:
        """Count a page the template served; True when it is due for an audit: the
        template's audit gap (:meth:`TemplateSettings.audit_gap`) of pages served in this
        process since its last audit here. The counts are saved every ``poll_seconds``."""
        template_id = doc["_id"]
        gap = self.config.audit_gap(int(doc.get("streak") or 0))
        with self._lock:
            self._unsaved[template_id] = self._unsaved.get(template_id, 0) + 1
            since = self._since_audit.get(template_id, 0) + 1
            audit = bool(gap) and since >= gap
            self._since_audit[template_id] = 0 if audit else since
            save = time.monotonic() - self._saved_at >= self.config.poll_seconds
        if save:
            self.save_hits()
        return audit

    def save_hits(self) -> None:
        """Add this process's unsaved hit counts to the stored templates (blocking)."""
        with self._lock:
            unsaved, self._unsaved = self._unsaved, {}
            self._saved_at = time.monotonic()
        if unsaved:
            self.store.add_hits(unsaved)

    def _serve(self, item: PageItem, checker: RecordChecker, page: PageTemplate,
               data: JSONObject, evidence: dict[str, str]) -> None:
        kept = checker.valid_values(data, set(page.ask))
        filled = {k: v for k, v in (page.values or {}).items()
                  if not is_empty(v) or (v is None and k in checker.required)}
        filled = shape_to_schema(filled, checker.schema)
        merged = {**kept, **filled}
        item.data = {name: merged[name] for name in checker.properties if name in merged}
        item.evidence = {**{k: evidence[k] for k in kept if k in evidence},
                         **{k: "template" for k, v in filled.items() if v is not None}}
        item.extraction = {"method": "template", "template": page.template_id,
                           "template_fields": sorted(page.ask)}
        if page.lacks:  # the record fails validation, as the LLM's answers of its shape did
            item.extraction["template_lacks"] = sorted(page.lacks)
            self._stat("unfit_pages")
        self._stat("pages")

    # -- after the LLM ---------------------------------------------------------------

    async def answered(self, page: PageTemplate, answer: JSONObject,
                       grounding: dict[str, bool], checker: RecordChecker) -> dict[str, object]:
        """Learn from, verify or audit with the LLM's answer; the ``extraction`` notes."""
        if page.template_id is None or page.role in ("none", "served"):
            return {}
        grounded = {name: answer.get(name) for name in page.ask
                    if grounding.get(name, True) or is_empty(answer.get(name))}
        notes = await asyncio.to_thread(self.learner.answered, page, grounded, checker)
        if page.role in ("learn", "verify"):
            self.holds.changed(page.template_id)
        return notes

    async def unanswered(self, page: PageTemplate | None) -> None:
        """The LLM gave no answer for a page that claimed one: another page asks instead."""
        if page is None or page.claim is None or page.template_id is None:
            return
        claim, page.claim = page.claim, None
        await asyncio.to_thread(self.store.unclaim, page.template_id, claim)
        self.holds.changed(page.template_id)

    def _stat(self, key: str) -> None:
        if self.stats is not None:
            self.stats.inc_value(f"batch/templates/{key}")
