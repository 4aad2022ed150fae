"""What the LLM path keeps in MongoDB: the answer cache, the call budget, the record quota.

* ``llm_cache``: ``_id`` = hash of (model, prompt, schema, content); the
  answer text and its token usage, and the ``batches`` that used it. A TTL index
  expires old answers; an answer only expired batches used goes with the last of them
  (:mod:`batchscraper.store.retention`).
* ``batches.llm_budget`` ``{calls, cost_usd}``: reserved before each call
  with a conditional ``$inc``, so parallel workers of one batch never go
  past ``max_llm_calls`` together; cost is added once the answer is in.
  (The batch ``counters`` move only with item transitions; this is separate.)
* ``batches.record_quota``: records granted against ``max_total_items``.

All methods block (pymongo): callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from typing import TypedDict, cast

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from batchscraper.jsontypes import Query

logger = logging.getLogger(__name__)

CACHE_COLLECTION = "llm_cache"
SECONDS_PER_DAY = 86_400
QUOTA_ATTEMPTS = 20


class CachedAnswer(TypedDict):
    """An LLM answer kept for the same request (``llm_cache``)."""

    _id: str
    text: str
    tokens_in: int
    tokens_out: int


class LLMLedger:
    """The LLM path's MongoDB collections and batch fields."""

    def __init__(self, db: Database, cache_ttl_days: float = 30) -> None:
        self.db = db
        self.cache = db[CACHE_COLLECTION]
        self.batches = db["batches"]
        self.cache_ttl_days = cache_ttl_days

    def ensure_indexes(self) -> None:
        """The TTL index that expires cached answers (idempotent)."""
        if self.cache_ttl_days > 0:
            self.cache.create_index(
                "created_at", expireAfterSeconds=int(self.cache_ttl_days * SECONDS_PER_DAY)
            )

    # -- cache -------------------------------------------------------------------

    def cache_get(self, key: str, batch_id: str) -> CachedAnswer | None:
        """The cached answer for ``key``: ``{text, tokens_in, tokens_out}``, or None; the
        answer notes that ``batch_id`` used it (retention removes it with its last batch)."""
        return cast("CachedAnswer | None", self.cache.find_one_and_update(
            {"_id": key}, {"$addToSet": {"batches": batch_id}},
            {"text": 1, "tokens_in": 1, "tokens_out": 1},
        ))

    def cache_put(self, key: str, model: str, text: str, tokens_in: int, tokens_out: int,
                  batch_id: str) -> None:
        """Remember an answer; a concurrent writer of the same key wins harmlessly."""
        doc = {"_id": key, "model": model, "text": text, "tokens_in": tokens_in,
               "tokens_out": tokens_out, "created_at": dt.datetime.now(dt.UTC),
               "batches": [batch_id]}
        with contextlib.suppress(DuplicateKeyError):
            self.cache.insert_one(doc)

    # -- budget ------------------------------------------------------------------

    def reserve_call(
        self, batch_id: str, max_calls: int | None, max_cost: float | None
    ) -> bool:
        """Count one more LLM call against the batch's budget; False when it is spent."""
        conditions: list[Query] = []
        if max_calls is not None:
            conditions.append(_below("llm_budget.calls", max_calls))
        if max_cost is not None:
            conditions.append(_below("llm_budget.cost_usd", max_cost))
        query: Query = {"_id": batch_id}
        if conditions:
            query["$and"] = conditions
        result = self.batches.update_one(query, {"$inc": {"llm_budget.calls": 1}})
        return result.modified_count == 1

    def release_call(self, batch_id: str) -> None:
        """Give back a reserved call that was never answered."""
        self.batches.update_one({"_id": batch_id}, {"$inc": {"llm_budget.calls": -1}})

    def add_cost(self, batch_id: str, cost_usd: float) -> None:
        """Add what an answered call cost to the batch's budget."""
        if cost_usd:
            self.batches.update_one({"_id": batch_id}, {"$inc": {"llm_budget.cost_usd": cost_usd}})

    # -- record quota ------------------------------------------------------------

    def reserve_records(self, batch_id: str, wanted: int, cap: int) -> int:
        """Grant up to ``wanted`` records against ``cap`` records per batch; returns the grant."""
        for _ in range(QUOTA_ATTEMPTS):
            doc = self.batches.find_one({"_id": batch_id}, {"record_quota": 1}) or {}
            used = int(doc.get("record_quota") or 0)
            granted = max(0, min(wanted, cap - used))
            if granted == 0:
                return 0
            condition: Query = (
                {"record_quota": used} if "record_quota" in doc
                else {"record_quota": {"$exists": False}}
            )
            result = self.batches.update_one(
                {"_id": batch_id, **condition}, {"$set": {"record_quota": used + granted}}
            )
            if result.modified_count == 1:
                return granted
        logger.warning("record quota of %s: too much contention, granting nothing", batch_id)
        return 0


def _below(path: str, limit: float) -> Query:
    return {"$or": [{path: {"$exists": False}}, {path: {"$lt": limit}}]}
