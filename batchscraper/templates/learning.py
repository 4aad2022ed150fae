"""What the LLM's answers do to a page's template: samples, candidates, verdicts, audits.

A page the LLM answered for its template (see :mod:`.step`) is a sample
(``learn``), a held-out page checking a candidate (``verify``), or an audit
of an active template. With enough samples, the one worker holding the
template's lease learns rules (:func:`~.selectors.learn_rules`). A required
field the LLM found on no sample is learned as absent: the shape's pages do
not fit the schema (a listing page under a product schema), and once verified
like any candidate the template gives them the record the LLM gives them, which
fails validation, without a call. Rules that cannot serve the shape's pages
are not proposed: a field of a type templates do not learn gives up the shape
(``abandoned``: its pages go to the LLM), a field no selector reproduces costs
an attempt and one more sample.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from batchscraper.extraction.validation import RecordChecker
from batchscraper.jsontypes import JSONObject
from batchscraper.llm.merge import is_empty
from batchscraper.templates.selectors import (
    Rule,
    Sample,
    field_kind,
    learn_rules,
    same_value,
)
from batchscraper.templates.settings import TemplateSettings
from batchscraper.templates.signature import page_tree
from batchscraper.templates.store import TemplateDocument, TemplateSample, TemplateStore

if TYPE_CHECKING:
    from lxml.html import HtmlElement

logger = logging.getLogger(__name__)


@dataclass
class PageTemplate:
    """One page's template and what it is for: ``served``, ``learn``, ``verify``, ``audit``,
    ``miss`` (the LLM answers; the template learns or is checked), ``held`` (waiting for
    the template's learning) or ``none``."""

    role: str
    template_id: str | None = None
    html: str = ""
    url: str = ""
    tree: HtmlElement | None = None
    ask: frozenset[str] = frozenset()
    values: JSONObject | None = field(default_factory=dict)  # what the template read
    required: frozenset[str] = frozenset()  # the schema's required fields
    lacks: frozenset[str] = frozenset()  # ... the template reads absent (see :func:`lacking`)
    claim: str | None = None  # the LLM answer of the template's learning this page gives
    attempt: int = 0  # the candidate a ``verify`` page checks
    rev: int = 0  # the template's revision this page was matched against
    ticket: int = 0  # when this process matched it (see TemplateHolds.wait)
    touched: bool = False  # this match changed the template (its waiters match again)
    on_sibling: bool = False  # ``held`` for another shape's template (``template_id``)

    @property
    def served(self) -> bool:
        return self.role == "served"


def lacking(rules: Mapping[str, Rule], required: frozenset[str]) -> frozenset[str]:
    """Required fields the rules read absent: the LLM found them on none of the samples, so
    the shape's pages do not fit the schema (a listing page under a product schema)."""
    return frozenset(name for name in required if name in rules and rules[name].get("absent"))


class TemplateLearner:
    """The answer side of one crawl's templates: learning, verification and audits."""

    def __init__(self, config: TemplateSettings, store: TemplateStore, worker_id: str,
                 stat: Callable[[str], None]) -> None:
        self.config = config
        self.store = store
        self.worker_id = worker_id
        self._stat = stat
        self._learning: set[str] = set()  # templates this process is learning now
        self._lock = threading.Lock()

    def answered(self, page: PageTemplate, answer: JSONObject,
                 checker: RecordChecker) -> dict[str, object]:
        """Learn from, verify or audit with the LLM's grounded answer; the ``extraction``
        notes (blocking)."""
        template_id = page.template_id
        assert template_id is not None
        claim, page.claim = page.claim, None
        if page.role == "miss":
            return {"template_miss": template_id}
        if page.role == "audit":
            agreed = self.agrees(page, answer)
            retired = self.store.outcome(template_id, not agreed, "audits", *self.window())
            self._stat("audits")
            if not agreed:
                self._stat("disagreements")
            self.retired(template_id, retired)
            return {"template_audit": {"template": template_id, "agreed": agreed}}
        if page.role == "verify":
            if page.values is not None and self.agrees(page, answer):
                if self.store.verified(template_id, page.attempt, self.config.verify_pages,
                                       claim):
                    self._stat("learned")
                    logger.info("Template %s learned: %s fields", template_id, len(page.ask))
                    return {"template_learned": template_id}
                return {}
            self.store.refuted(template_id, page.attempt)
            self._stat("refuted")
        if len(page.html) > self.config.sample_max_bytes:
            if claim is not None:
                self.store.unclaim(template_id, claim)
            return {}
        sample: TemplateSample = {"url": page.url, "html": page.html, "answer": answer}
        kept = self.store.add_sample(template_id, sample, self.config.samples_kept, claim)
        if kept >= self.config.samples:
            self.learn(template_id, checker)
        return {}

    def agrees(self, page: PageTemplate, answer: JSONObject) -> bool:
        """The template reproduces every required field (filled, unless the template reads
        it absent) and most of the others."""
        values = page.values or {}
        compared = [name for name in answer if name in values]
        if not compared:
            return False
        equal = {name for name in compared if same_value(values[name], answer[name])}
        required = page.required & set(compared)
        # a required field the template reads absent agrees only with an answer without it
        filled = all(not is_empty(values[name]) for name in required - page.lacks)
        return filled and required <= equal \
            and len(equal) >= self.config.agreement * len(compared)

    def learn(self, template_id: str, checker: RecordChecker) -> bool:
        """Rules from the template's samples, by the one worker holding its lease; True
        when the template moved on (a candidate, one more attempt, or given up)."""
        with self._lock:
            if template_id in self._learning:
                return False
            self._learning.add(template_id)
        try:
            worker = self.worker_id
            if not self.store.lease(template_id, worker, self.config.lease_seconds):
                return False
            doc = self.store.learning_state(template_id)
            if doc is None or doc["status"] != "learning" or \
                    len(doc["samples"]) < self.config.samples_needed(doc["attempts"]):
                self.store.release(template_id, worker)
                return False
            if doc["attempts"] >= self.config.max_attempts:
                self._give_up(template_id, f"{doc['attempts']} candidates failed")
                return True
            self._propose(template_id, doc, checker)
            return True
        finally:
            with self._lock:
                self._learning.discard(template_id)

    def _propose(self, template_id: str, doc: TemplateDocument, checker: RecordChecker
                 ) -> None:
        """Propose the samples' rules, or try again, or give up when they cannot serve."""
        worker = self.worker_id
        samples = [Sample(tree, s["answer"]) for s in doc["samples"]
                   if (tree := page_tree(s["html"])) is not None]
        rules = learn_rules(samples, checker.properties)
        answered = {name for sample in samples for name in sample.answer}
        unlearnable = sorted(
            name for name in answered - set(rules)
            if field_kind(checker.properties.get(name)) is None)
        missed = sorted(answered - set(rules))
        if not rules:
            self._give_up(template_id, "no selector reproduces the samples")
        elif unlearnable:
            self._give_up(template_id, f"{', '.join(unlearnable)}: a type templates do not "
                                       "learn")
        elif missed:
            if doc["attempts"] + 1 >= self.config.max_attempts:
                self._give_up(template_id, f"no selector reproduces {', '.join(missed)}")
            else:
                self.store.retry(template_id, worker)
                self._stat("retries")
        else:
            lacks = lacking(rules, frozenset(checker.required))
            reason = f"the LLM found no {', '.join(sorted(lacks))} on its pages: they do not " \
                     "fit the schema (they fail validation, as the LLM's answers do)" \
                if lacks else None
            self.store.propose(template_id, rules, worker, reason)
            self._stat("candidates")

    def _give_up(self, template_id: str, reason: str) -> None:
        self.store.give_up(template_id, self.worker_id, reason)
        self._stat("abandoned")
        logger.info("Template %s abandoned: %s (its pages go to the LLM)", template_id, reason)

    def retired(self, template_id: str, retired: bool) -> None:
        """Log and count a retirement (``retired``: the outcome just retired the template)."""
        if retired:
            self._stat("retired")
            logger.warning("Template %s retired: too many misses or audit disagreements "
                           "(the site changed?); it will be learned again", template_id)

    def window(self) -> tuple[int, float, int]:
        """The retirement window's settings, as :meth:`TemplateStore.outcome` takes them."""
        return self.config.window, self.config.retire_share, self.config.retire_min
