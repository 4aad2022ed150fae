"""Retention: what expires is removed, with what was derived from it.

A batch with ``expires_at`` (``expires_in``, or ``BATCH_RETENTION_DAYS``) is
removed then, with its items, its screenshots (GridFS), its Idempotency-Keys,
its webhook events and the cached LLM answers no other batch used; a batch
with ``content_retention_days`` keeps its records, but their page ``content``
and screenshots are dropped that many days after each item finished. A TTL index
makes MongoDB remove an expired batch document on its own (``expires_at``);
everything else goes in this sweep, which finds the batches that expired in
``expiring`` (written with the batch, kept until the sweep), so it also works
where TTL is not enforced (the embedded server).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import gridfs
from bson import ObjectId

from batchscraper.store.base import StoreBase, utcnow
from batchscraper.store.batches import EXPIRING
from batchscraper.store.ledger import CACHE_COLLECTION
from batchscraper.store.outbox import OUTBOX

SCREENSHOTS = "screenshots"


class BatchRetention(StoreBase):
    """Removes expired batches and drops content past its retention."""

    def sweep_expired(self, now: dt.datetime | None = None) -> dict[str, int]:
        """One sweep; how many batches were removed, items lost their content, and
        screenshot files were deleted."""
        now = now or utcnow()
        due = {"expires_at": {"$lte": now}}
        expired = sorted({doc["_id"] for doc in self.db[EXPIRING].find(due, {"_id": 1})}
                         | {doc["_id"] for doc in self.batches.find(due, {"_id": 1})})
        for batch_id in expired:
            self.remove_batch(batch_id)
        dropped = self._drop_old_content(now)
        orphans = self._orphan_screenshots()
        return {"batches": len(expired), "content_dropped": dropped, "screenshots": orphans}

    def remove_batch(self, batch_id: str) -> None:
        """The batch and everything stored for it: items, screenshots, keys, webhook events."""
        self._delete_screenshots({"metadata.batch_id": batch_id})
        self.items.delete_many({"batch_id": batch_id})
        self.db["idempotency"].delete_many({"batch_id": batch_id})
        self.db[OUTBOX].delete_many({"batch_id": batch_id})
        cache = self.db[CACHE_COLLECTION]  # answers derived only from this batch go with it
        cache.delete_many({"batches": [batch_id]})
        cache.update_many({"batches": batch_id}, {"$pull": {"batches": batch_id}})
        self.batches.delete_one({"_id": batch_id})
        self.db[EXPIRING].delete_one({"_id": batch_id})

    def _drop_old_content(self, now: dt.datetime) -> int:
        dropped = 0
        for batch in self.batches.find({"options.content_retention_days": {"$gte": 1}},
                                       {"options.content_retention_days": 1}):
            cutoff = now - dt.timedelta(days=batch["options"]["content_retention_days"])
            old = {"batch_id": batch["_id"], "finished_at": {"$lte": cutoff}}
            shots = [doc["screenshot"]["gridfs_id"] for doc in self.items.find(
                {**old, "screenshot": {"$ne": None}}, {"screenshot": 1})]
            if shots:
                self._delete_screenshots({"_id": {"$in": [ObjectId(i) for i in shots]}})
            dropped += self.items.update_many(
                {**old, "$or": [{"content": {"$ne": None}}, {"screenshot": {"$ne": None}}]},
                {"$set": {"content": None, "screenshot": None, "content_dropped_at": now}},
            ).modified_count
        return dropped

    def _orphan_screenshots(self) -> int:
        """Screenshots whose batch is gone (a TTL index removed it)."""
        files = self.db[f"{SCREENSHOTS}.files"]
        batch_ids = {doc.get("metadata", {}).get("batch_id")
                     for doc in files.find({}, {"metadata.batch_id": 1})}
        live = {doc["_id"] for doc in self.batches.find(
            {"_id": {"$in": sorted(i for i in batch_ids if i)}}, {"_id": 1})}
        gone = sorted(i for i in batch_ids if i and i not in live)
        return self._delete_screenshots({"metadata.batch_id": {"$in": gone}}) if gone else 0

    def _delete_screenshots(self, query: Mapping[str, object]) -> int:
        bucket = gridfs.GridFSBucket(self.db, bucket_name=SCREENSHOTS)
        ids = [doc["_id"] for doc in self.db[f"{SCREENSHOTS}.files"].find(query, {"_id": 1})]
        for file_id in ids:
            bucket.delete(file_id)
        return len(ids)
