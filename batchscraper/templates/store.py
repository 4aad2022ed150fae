"""The ``templates`` collection: learned page templates, shared by every worker of an owner.

One document per template version: its key (``owner``, ``host``,
``schema_fp``) and page shape (``shape``: hashed element paths), its
``status`` — ``learning`` (collecting LLM-answered samples), ``verifying``
(a candidate checked against held-out pages the LLM answers), ``active``
(extracting pages), ``retired`` (too many misses or audit disagreements:
the site changed) or ``abandoned`` (learning gave up after its attempts) —
its ``rules``, ``samples`` (page HTML and the LLM's grounded answer) and
counters (``streak``: its agreeing comparisons with the LLM in a row, held-out
pages and audits, which space its audits out). Learning takes a lease on the
document, so two workers never learn one template at once. While a template
learns or verifies, each page sent to the LLM for it holds a claim
(``asking``): every worker sends only the answers the template still needs,
and the shape's other pages wait. ``rev`` counts the changes a waiting page
cares about (samples, candidates, verdicts, claims given back). All methods
are blocking pymongo calls.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from collections.abc import Mapping
from typing import TypedDict, cast

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database

from batchscraper.jsontypes import Document, JSONObject
from batchscraper.templates.selectors import Rule
from batchscraper.templates.signature import similarity

#: a template's statuses; ``retired`` ones no longer match pages
STATUSES = ("learning", "verifying", "active", "retired", "abandoned")
LIVE_STATUSES = tuple(status for status in STATUSES if status != "retired")
#: what a page match reads (of the samples, only their URLs: how many there are)
MATCH_FIELDS = {"samples.html": 0, "samples.answer": 0}
#: compare-and-set rounds of a claim before giving up (another worker kept changing it)
CLAIM_TRIES = 5
#: what the API reads of a template: no page HTML, no shape hashes
READ_FIELDS = {"samples.html": 0, "shape": 0}
#: ... and in lists, of its samples only their URLs
PAGE_FIELDS = {"samples.html": 0, "samples.answer": 0, "shape": 0}
#: a template's id (``tpl_`` and 16 hex digits)
TEMPLATE_ID = re.compile(r"tpl_[0-9a-f]{16}")


class TemplateKey(TypedDict):
    """What a template is for: an owner's pages of one host, for one schema."""

    owner: str | None
    host: str
    schema_fp: str  # schema_fingerprint()


class TemplateSample(TypedDict, total=False):
    """One LLM-answered page a template learns from."""

    url: str
    html: str
    answer: JSONObject


class AnswerClaim(TypedDict):
    """A page's claim on one of the LLM answers a template's learning needs."""

    token: str
    worker: str
    until: float  # time.time() when it lapses


class TemplateDocument(TemplateKey, total=False):
    """One template as stored (a read with a projection has only some of the fields)."""

    _id: str
    version: int
    shape: list[int]  # page_shape() hashes
    status: str  # STATUSES
    rules: dict[str, Rule] | None
    samples: list[TemplateSample]
    seeded: bool  # its first candidate was a sibling's rules
    attempts: int
    checked: int  # held-out pages that agreed with the current candidate
    rev: int  # bumped by every change pages wait for
    asking: list[AnswerClaim]  # pages whose LLM answers it waits for
    lease: Document | None  # the worker learning it
    hits: int
    misses: int
    audits: int
    streak: int
    disagreements: int
    window: list[int]  # the latest misses and audits: 1 went wrong
    batch_id: str
    reason: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    activated_at: dt.datetime
    retired_at: dt.datetime


Templates = list[TemplateDocument]  # (a method of TemplateStore is named ``list``)


def _template(doc: Mapping[str, object] | None) -> TemplateDocument | None:
    """A ``templates`` document as read back: as this module wrote it (a projection of it)."""
    return cast("TemplateDocument | None", doc)


def new_template_id() -> str:
    return f"tpl_{uuid.uuid4().hex[:16]}"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TemplateStore:
    """Reads and writes of the ``templates`` collection."""

    def __init__(self, db: Database[Document]) -> None:
        self.templates = db["templates"]

    def ensure_indexes(self) -> None:
        self.templates.create_index([("owner", ASCENDING), ("host", ASCENDING),
                                     ("schema_fp", ASCENDING), ("status", ASCENDING)])
        self.templates.create_index([("owner", ASCENDING), ("created_at", DESCENDING)])

    # -- matching -------------------------------------------------------------------

    def live(self, owner: str | None, host: str, schema_fp: str) -> list[TemplateDocument]:
        """The templates that can match pages of this key (oldest first)."""
        query = {"owner": owner, "host": host, "schema_fp": schema_fp,
                 "status": {"$in": list(LIVE_STATUSES)}}
        found = self.templates.find(query, MATCH_FIELDS).sort("created_at", ASCENDING)
        return [cast(TemplateDocument, doc) for doc in found]

    def create(self, key: TemplateKey, shape: frozenset[int], batch_id: str,
               threshold: float, rules: dict[str, Rule] | None = None) -> TemplateDocument:
        """A new template for a page shape no live template has: ``learning``, or with
        ``rules`` (a sibling's, tried first) ``verifying`` them.

        Two workers may create one for the same shape at once: the older one
        wins and the other is deleted, so each shape is learned once.
        """
        version = 1 + max((cast(int, doc.get("version", 0)) for doc in self.templates.find(
            {**key}, {"version": 1})), default=0)
        now = utcnow()
        doc: TemplateDocument = {
            "_id": new_template_id(), **key, "version": version,
            "shape": sorted(shape), "status": "verifying" if rules else "learning",
            "rules": rules or None, "samples": [], "seeded": bool(rules),
            "attempts": 0, "checked": 0, "rev": 0, "asking": [],
            "hits": 0, "misses": 0, "audits": 0, "streak": 0,
            "disagreements": 0, "window": [], "batch_id": batch_id,
            "created_at": now, "updated_at": now,
        }
        self.templates.insert_one(cast(Document, doc))
        rivals = [other for other in self.live(key["owner"], key["host"], key["schema_fp"])
                  if similarity(shape, other["shape"]) >= threshold]
        winner = min(rivals, key=lambda other: (other["created_at"], other["_id"]), default=doc)
        if winner["_id"] != doc["_id"]:
            self.templates.delete_one({"_id": doc["_id"]})
            return winner
        return doc

    # -- learning -------------------------------------------------------------------

    def add_sample(self, template_id: str, sample: TemplateSample, keep: int,
                   claim: str | None = None) -> int:
        """Keep one LLM-answered page (the last ``keep``); returns how many are kept."""
        doc = _template(self.templates.find_one_and_update(
            {"_id": template_id},
            {"$push": {"samples": {"$each": [sample], "$slice": -keep}},
             "$pull": {"asking": {"token": claim}},
             "$inc": {"rev": 1}, "$set": {"updated_at": utcnow()}},
            projection={"samples.url": 1}, return_document=ReturnDocument.AFTER))
        return len(doc["samples"]) if doc else 0

    def samples(self, template_id: str) -> list[TemplateSample]:
        doc = _template(self.templates.find_one({"_id": template_id}, {"samples": 1}))
        return list(doc["samples"]) if doc else []

    def learning_state(self, template_id: str) -> TemplateDocument | None:
        """The template's status, attempts and samples (what learning starts from)."""
        return _template(self.templates.find_one({"_id": template_id},
                                                 {"attempts": 1, "status": 1, "samples": 1}))

    def claim(self, doc: TemplateDocument, needed: int, worker: str, seconds: float) -> str | None:
        """One of the ``needed`` LLM answers of the template's current phase, for one page.

        ``doc`` is the template as a match read it; None when other pages (of any
        worker) already ask for all of them, or the template moved on.
        """
        for _ in range(CLAIM_TRIES):
            now = time.time()
            asking = [c for c in doc.get("asking") or [] if c["until"] > now]
            if doc["status"] not in ("learning", "verifying") or len(asking) >= needed:
                return None
            token = uuid.uuid4().hex
            claimed = self.templates.update_one(
                {"_id": doc["_id"], "rev": doc.get("rev"), "asking": doc.get("asking"),
                 "status": doc["status"]},
                {"$set": {"asking": [*asking, {"token": token, "worker": worker,
                                               "until": now + seconds}]}})
            if claimed.modified_count == 1:
                return token
            found = _template(self.templates.find_one({"_id": doc["_id"]}, MATCH_FIELDS))
            if found is None:
                return None
            doc = found
        return None

    def unclaim(self, template_id: str, claim: str) -> None:
        """A claimed page got no answer (the LLM failed): another page may ask instead."""
        self.templates.update_one({"_id": template_id, "asking.token": claim},
                                  {"$pull": {"asking": {"token": claim}}, "$inc": {"rev": 1}})

    def revision(self, template_id: str) -> int | None:
        """The template's ``rev`` (None once it is gone)."""
        doc = _template(self.templates.find_one({"_id": template_id}, {"rev": 1}))
        return None if doc is None else int(doc.get("rev", 0))

    def lease(self, template_id: str, worker: str, seconds: float) -> bool:
        """Hold the right to learn this template for ``seconds`` (False: another worker has it)."""
        now = utcnow()
        free = {"$or": [{"lease": None}, {"lease.until": {"$lt": now}},
                        {"lease.worker": worker}]}
        until = now + dt.timedelta(seconds=seconds)
        result = self.templates.update_one(
            {"_id": template_id, **free}, {"$set": {"lease": {"worker": worker, "until": until}}})
        return result.modified_count == 1

    def propose(self, template_id: str, rules: dict[str, Rule], worker: str,
                reason: str | None = None) -> None:
        """A candidate from the samples: verified next on held-out pages; the lease ends.
        ``reason``: why its pages do not fit the schema (a required field it reads absent)."""
        self.templates.update_one({"_id": template_id, "lease.worker": worker}, {
            "$set": {"rules": rules, "status": "verifying", "checked": 0, "lease": None,
                     "asking": [], "reason": reason, "updated_at": utcnow()},
            "$inc": {"attempts": 1, "rev": 1}})

    def retry(self, template_id: str, worker: str) -> None:
        """The samples gave no usable candidate: one more attempt, with one more sample."""
        self.templates.update_one({"_id": template_id, "lease.worker": worker}, {
            "$set": {"lease": None, "updated_at": utcnow()}, "$inc": {"attempts": 1, "rev": 1}})

    def give_up(self, template_id: str, worker: str, reason: str) -> None:
        self.templates.update_one({"_id": template_id, "lease.worker": worker}, {
            "$set": {"status": "abandoned", "reason": reason, "lease": None, "asking": [],
                     "updated_at": utcnow()},
            "$inc": {"rev": 1}})

    def release(self, template_id: str, worker: str) -> None:
        self.templates.update_one({"_id": template_id, "lease.worker": worker},
                                  {"$set": {"lease": None}})

    def verified(self, template_id: str, attempt: int, needed: int,
                 claim: str | None = None) -> bool:
        """A held-out page agreed with candidate ``attempt``; True when it made it active."""
        doc = _template(self.templates.find_one_and_update(
            {"_id": template_id, "status": "verifying", "attempts": attempt},
            {"$inc": {"checked": 1, "rev": 1}, "$pull": {"asking": {"token": claim}},
             "$set": {"updated_at": utcnow()}},
            projection={"checked": 1}, return_document=ReturnDocument.AFTER))
        if doc is None or doc["checked"] < needed:
            return False
        now = utcnow()
        # its held-out pages are its first agreeing comparisons with the LLM (audits follow)
        result = self.templates.update_one(
            {"_id": template_id, "status": "verifying", "attempts": attempt},
            {"$set": {"status": "active", "activated_at": now, "updated_at": now, "asking": [],
                      "streak": doc["checked"]},
             "$inc": {"rev": 1}})
        return result.modified_count == 1

    def refuted(self, template_id: str, attempt: int) -> None:
        """A held-out page disagreed with candidate ``attempt``: it is dropped, learning goes on."""
        self.templates.update_one(
            {"_id": template_id, "status": "verifying", "attempts": attempt},
            {"$set": {"status": "learning", "rules": None, "checked": 0, "asking": [],
                      "reason": None, "updated_at": utcnow()},
             "$inc": {"rev": 1}})

    # -- use ----------------------------------------------------------------------------

    def add_hits(self, hits: dict[str, int]) -> None:
        """Count pages the templates extracted (a worker saves its counts now and then)."""
        for template_id, count in hits.items():
            self.templates.update_one({"_id": template_id}, {"$inc": {"hits": count}})

    def outcome(self, template_id: str, bad: bool, counter: str, window: int,
                retire_share: float, retire_min: int) -> bool:
        """Count a miss or an audit (a disagreeing one in ``disagreements`` too), and the
        agreeing ones in a row (``streak``: they space the audits out); True when this
        retired the template (site changed)."""
        counts = {counter: 1, **({"disagreements": 1} if bad and counter == "audits" else {})}
        update: dict[str, Document] = {
            "$inc": {**counts, **({} if bad else {"streak": 1})},
            "$push": {"window": {"$each": [int(bad)], "$slice": -window}},
            "$set": {"updated_at": utcnow(), **({"streak": 0} if bad else {})}}
        doc = _template(self.templates.find_one_and_update(
            {"_id": template_id}, update,
            projection={"window": 1, "status": 1}, return_document=ReturnDocument.AFTER))
        if doc is None or doc["status"] != "active":
            return False
        recent = doc["window"]
        if sum(recent) < retire_min or sum(recent) / len(recent) <= retire_share:
            return False
        now = utcnow()
        result = self.templates.update_one({"_id": template_id, "status": "active"}, {"$set": {
            "status": "retired", "retired_at": now, "updated_at": now,
            "reason": f"{sum(recent)} of the last {len(recent)} misses and audits went wrong"}})
        return result.modified_count == 1

    # -- the API's reads -------------------------------------------------------------

    def list(self, owner: str | None, **query: object) -> list[TemplateDocument]:
        """An owner's templates, newest first, without their samples' pages."""
        found = self.templates.find({"owner": owner, **query}, READ_FIELDS)
        return [cast(TemplateDocument, doc) for doc in found.sort("created_at", -1)]

    def page(self, query: Mapping[str, object], page: int, limit: int
             ) -> tuple[Templates, int]:
        """One page of the templates ``query`` matches, newest first, and how many match;
        without samples' pages and answers (their URLs stay)."""
        total = self.templates.count_documents(query)
        cursor = (self.templates.find(query, PAGE_FIELDS)
                  .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
                  .skip((page - 1) * limit).limit(limit))
        return [cast(TemplateDocument, doc) for doc in cursor], total

    def get(self, template_id: str) -> TemplateDocument | None:
        return cast("TemplateDocument | None",
                    self.templates.find_one({"_id": template_id}, READ_FIELDS))

    def delete(self, template_id: str) -> bool:
        return self.templates.delete_one({"_id": template_id}).deleted_count == 1
