"""The extract pipeline's use of templates: match a page, extract it, or learn from its answer.

:meth:`TemplateStep.fit` runs before the LLM would be asked for a page's
``fields_to_ask``. It finds the page's template by key (owner, host, schema
fingerprint) and shape, and:

- an ``active`` template whose rules cover the asked fields extracts them; the
  record is checked (required fields filled, schema valid) and the page is
  done without an LLM call (``extraction.method: "template"``). One page in
  ``BATCH_TEMPLATE_AUDIT_EVERY`` is an audit: the LLM is asked as well and its
  answer compared. A page the template cannot fill is a miss and goes to the
  LLM; misses and audit disagreements over a sliding window retire the template.
- a page of a ``learning`` template goes to the LLM; its grounded answer is a
  sample. From ``BATCH_TEMPLATE_SAMPLES`` samples one worker (a lease) learns
  rules, which become a candidate (``verifying``).
- a page of a ``verifying`` template goes to the LLM too and is compared:
  ``BATCH_TEMPLATE_VERIFY_PAGES`` agreeing pages make the candidate active;
  a disagreement drops it and learning starts again with that page as one
  more sample, at most ``BATCH_TEMPLATE_MAX_ATTEMPTS`` times.

The batch option ``templates``: ``auto`` (default), ``off``, or ``only``:
once a host has an active template for the schema, a page that no active
template fits fails with TEMPLATE_MISS instead of going to the LLM.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from scrapy.crawler import Crawler

from batchscraper.exceptions import TemplateMissError
from batchscraper.extraction.validation import RecordChecker
from batchscraper.items import PageItem
from batchscraper.llm.merge import is_empty, shape_to_schema
from batchscraper.run import BatchRun
from batchscraper.templates.selectors import (
    RuleFailed,
    Sample,
    apply_rules,
    learn_rules,
    same_value,
)
from batchscraper.templates.settings import TemplateSettings
from batchscraper.templates.signature import (
    page_shape,
    page_tree,
    schema_fingerprint,
    similarity,
    site_of,
)
from batchscraper.templates.store import TemplateStore

logger = logging.getLogger(__name__)


@dataclass
class PageTemplate:
    """One page's template and what it is for: ``served``, ``learn``, ``verify``, ``audit``,
    ``miss`` (the LLM answers; the template learns or is checked) or ``none``."""

    role: str
    template_id: str | None = None
    html: str = ""
    url: str = ""
    tree: Any = None
    ask: frozenset[str] = frozenset()
    values: dict[str, Any] | None = field(default_factory=dict)  # what the template read

    @property
    def served(self) -> bool:
        return self.role == "served"


class TemplateStep:
    """Template matching, extraction and learning for one crawl."""

    def __init__(self, config: TemplateSettings, store: TemplateStore, run: BatchRun,
                 stats: Any) -> None:
        self.config = config
        self.store = store
        self.run = run
        self.stats = stats
        self.key: dict[str, Any] = {"owner": run.batch.get("owner"),
                                    "schema_fp": schema_fingerprint(run.schema or {})}

    @classmethod
    def from_crawler(cls, crawler: Crawler, run: BatchRun) -> TemplateStep | None:
        """None when ``BATCH_TEMPLATES_ENABLED`` is off."""
        config = TemplateSettings.from_settings(crawler.settings)
        if not config.enabled:
            return None
        store = TemplateStore(run.store.db)
        store.ensure_indexes()
        return cls(config, store, run, crawler.stats)

    # -- before the LLM ----------------------------------------------------------------

    async def fit(self, item: PageItem, url: str, checker: RecordChecker, ask: set[str],
                  data: dict[str, Any], evidence: dict[str, str]) -> PageTemplate | None:
        """The page's template; when ``served``, ``item`` is done (extracted, or failed)."""
        mode = self.run.options.templates
        if mode == "off" or item.body is None or not ask:
            return None
        page = await asyncio.to_thread(self._match, item.body, url, checker, frozenset(ask),
                                       data, mode == "only")
        if page.role == "miss" and mode == "only":
            self._stat("misses")
            item.fail(TemplateMissError(
                f"no learned template of {site_of(url)} extracts this page").to_dict())
            item.extraction = {"template_miss": page.template_id or True}
            page.role = "served"
        elif page.served:
            self._serve(item, checker, page, data, evidence)
        return page

    def _match(self, html: str, url: str, checker: RecordChecker, ask: frozenset[str],
               data: dict[str, Any], only: bool) -> PageTemplate:
        tree = page_tree(html)
        if tree is None:
            return PageTemplate("none")
        shape = page_shape(tree)
        key = {**self.key, "host": site_of(url)}
        live = self.store.live(key["owner"], key["host"], key["schema_fp"])
        scored = [(similarity(shape, doc["shape"]), doc) for doc in live]
        best = max(scored, key=lambda pair: pair[0], default=(0.0, None))
        doc = best[1] if best[0] >= self.config.similarity else None
        # "only": once the host has an active template, pages no active one fits are misses
        strict = only and any(other["status"] == "active" for other in live)
        page = PageTemplate("none", html=html, url=url, tree=tree, ask=ask)
        if doc is None:
            if strict:
                page.role = "miss"
                return page
            doc = self.store.create(key, shape, self.run.batch_id, self.config.similarity)
            self._stat("created")
        page.template_id = doc["_id"]
        status = doc["status"]
        if status == "learning":
            page.role = "learn"
        elif status == "verifying":
            page.role = "verify"
            page.values = self._read(tree, doc["rules"], ask)
        elif status == "active":
            self._use(page, doc, checker, data)
        elif strict:  # abandoned: this shape cannot be learned
            page.role = "miss"
        return page

    def _use(self, page: PageTemplate, doc: dict[str, Any], checker: RecordChecker,
             data: dict[str, Any]) -> None:
        rules = doc["rules"] or {}
        values = self._read(page.tree, rules, page.ask) if page.ask <= set(rules) else None
        kept = checker.valid_values(data, set(page.ask))
        present = {k: v for k, v in (values or {}).items() if not is_empty(v)}
        if values is None or any(name not in present for name in checker.required
                                 if name in page.ask) \
                or checker.error_lines([{**kept, **present}], set(present)):
            page.role = "miss"
            retired = self.store.outcome(doc["_id"], True, "misses", *self._window())
            self._retired(doc["_id"], retired)
            return
        page.values = values
        hits = self.store.hit(doc["_id"])
        audit_every = self.config.audit_every
        page.role = "audit" if audit_every and hits % audit_every == 0 else "served"

    @staticmethod
    def _read(tree: Any, rules: dict[str, Any], ask: frozenset[str]) -> dict[str, Any] | None:
        try:
            return apply_rules(tree, {name: rule for name, rule in rules.items() if name in ask})
        except RuleFailed:
            return None

    def _serve(self, item: PageItem, checker: RecordChecker, page: PageTemplate,
               data: dict[str, Any], evidence: dict[str, str]) -> None:
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
        self._stat("pages")

    # -- after the LLM ---------------------------------------------------------------

    async def answered(self, page: PageTemplate, answer: dict[str, Any],
                       grounding: dict[str, bool]) -> dict[str, Any]:
        """Learn from, verify or audit with the LLM's answer; the ``extraction`` notes."""
        if page.template_id is None or page.role in ("none", "served"):
            return {}
        grounded = {name: answer.get(name) for name in page.ask
                    if grounding.get(name, True) or is_empty(answer.get(name))}
        return await asyncio.to_thread(self._answered, page, grounded)

    def _answered(self, page: PageTemplate, answer: dict[str, Any]) -> dict[str, Any]:
        template_id = page.template_id
        assert template_id is not None
        if page.role == "miss":
            return {"template_miss": template_id}
        if page.role == "audit":
            agreed = self._agrees(page, answer)
            retired = self.store.outcome(template_id, not agreed, "audits", *self._window())
            self._stat("audits")
            if not agreed:
                self._stat("disagreements")
            self._retired(template_id, retired)
            return {"template_audit": {"template": template_id, "agreed": agreed}}
        if page.role == "verify":
            if page.values is not None and self._agrees(page, answer):
                if self.store.verified(template_id, self.config.verify_pages):
                    self._stat("learned")
                    logger.info("Template %s learned: %s fields", template_id, len(page.ask))
                    return {"template_learned": template_id}
                return {}
            self.store.refuted(template_id)
            self._stat("refuted")
        if self._keep_sample(template_id, page, answer) >= self.config.samples:
            self._learn(template_id)
        return {}

    def _agrees(self, page: PageTemplate, answer: dict[str, Any]) -> bool:
        """The template reproduces every required field and most of the others."""
        values = page.values or {}
        compared = [name for name in answer if name in values]
        if not compared:
            return False
        equal = {name for name in compared if same_value(values[name], answer[name])}
        required = set(self.run.checker(None).required) & set(compared)
        return required <= equal and len(equal) >= self.config.agreement * len(compared)

    def _keep_sample(self, template_id: str, page: PageTemplate, answer: dict[str, Any]) -> int:
        if len(page.html) > self.config.sample_max_bytes:
            return 0
        sample = {"url": page.url, "html": page.html, "answer": answer}
        return self.store.add_sample(template_id, sample, self.config.samples_kept)

    def _learn(self, template_id: str) -> None:
        """Rules from the template's samples, by the one worker holding its lease."""
        worker = self.run.worker_id
        if not self.store.lease(template_id, worker, self.config.lease_seconds):
            return
        doc = self.store.templates.find_one({"_id": template_id}, {"attempts": 1, "status": 1})
        if doc is None or doc["status"] != "learning":
            self.store.release(template_id, worker)
            return
        if doc["attempts"] >= self.config.max_attempts:
            self.store.give_up(template_id, worker, f"{doc['attempts']} candidates disagreed "
                                                    "with held-out pages")
            self._stat("abandoned")
            return
        samples = [Sample(page_tree(s["html"]), s["answer"])
                   for s in self.store.samples(template_id)]
        properties = self.run.checker(None).properties
        rules = learn_rules([s for s in samples if s.tree is not None], properties)
        if not rules:
            self.store.give_up(template_id, worker, "no selector reproduces the samples")
            self._stat("abandoned")
            return
        self.store.propose(template_id, rules, worker)
        self._stat("candidates")

    def _retired(self, template_id: str, retired: bool) -> None:
        if retired:
            self._stat("retired")
            logger.warning("Template %s retired: too many misses or audit disagreements "
                           "(the site changed?); it will be learned again", template_id)

    def _window(self) -> tuple[int, float, int]:
        return self.config.window, self.config.retire_share, self.config.retire_min

    def _stat(self, key: str) -> None:
        if self.stats is not None:
            self.stats.inc_value(f"batch/templates/{key}")
