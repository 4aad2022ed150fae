"""Results: what a worker writes back for a batch.

Item records (with their counters, and copies to duplicate URLs),
screenshots, and per-domain health.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import gridfs
from bson import ObjectId
from pymongo import UpdateMany, UpdateOne
from pymongo.client_session import ClientSession

from batchscraper.store.base import (
    StoreBase,
    counters_for_transition,
    failure_code,
    item_id,
    utcnow,
)

BREAKER_SEVERITY = {"closed": 0, "slowed": 1, "open": 2}


class ItemResults(StoreBase):
    """Finished items' records, screenshots and domain health."""

    def finish_items(self, records: list[dict[str, Any]]) -> list[bool]:
        """running -> completed|failed for each record, in one transaction; copies to duplicates.

        Returns, per record, whether it was applied: False (and nothing
        changed) when the item was no longer running — already finished by
        another worker, or cancelled. The batch counters move once per batch.
        In a transaction the item statuses are read first and the writes go
        in one bulk request (its snapshot makes the read hold for the
        writes); without transactions each write carries the precondition
        and reports whether it applied.
        """
        ids = [item_id(record["batch_id"], record["index"]) for record in records]

        def work(session: ClientSession | None) -> list[bool]:
            if session is None:
                outcomes = [
                    self._finish_one(r, i, session) for r, i in zip(records, ids, strict=True)
                ]
            else:
                outcomes = self._finish_in_bulk(records, ids, session)
            increments: dict[str, Counter[str]] = defaultdict(Counter)
            for record, inc in zip(records, outcomes, strict=True):
                if inc:
                    increments[record["batch_id"]].update(inc)
            for batch_id, inc in increments.items():
                changes = {key: value for key, value in inc.items() if value}
                if changes:
                    self.batches.update_one({"_id": batch_id}, {"$inc": changes}, session=session)
            return [inc is not None for inc in outcomes]

        return self._atomic(work)

    def _finish_in_bulk(
        self, records: list[dict[str, Any]], ids: list[str], session: ClientSession
    ) -> list[dict[str, Any] | None]:
        current = {
            doc["_id"]: doc
            for doc in self.items.find(
                {"_id": {"$in": ids}}, {"status": 1, "duplicates": 1}, session=session
            )
        }
        copy_ids = {
            _id: [item_id(record["batch_id"], i) for i in current[_id].get("duplicates") or []]
            for record, _id in zip(records, ids, strict=True)
            if _id in current
        }
        pending = (
            {
                doc["_id"]
                for doc in self.items.find(
                    {
                        "_id": {"$in": [i for group in copy_ids.values() for i in group]},
                        "status": "pending",
                    },
                    {"_id": 1},
                    session=session,
                )
            }
            if any(copy_ids.values())
            else set()
        )
        writes: list[UpdateOne | UpdateMany] = []
        outcomes: list[dict[str, Any] | None] = []
        for record, _id in zip(records, ids, strict=True):
            if current.get(_id, {}).get("status") != "running":
                outcomes.append(None)
                continue
            current[_id]["status"] = record["status"]  # the same item twice in one flush
            fields, copy = _record_fields(record)
            writes.append(
                UpdateOne(
                    {"_id": _id, "status": "running"}, {"$set": fields, "$unset": {"lease": ""}}
                )
            )
            copies = [i for i in copy_ids[_id] if i in pending]
            if copies:
                writes.append(
                    UpdateMany({"_id": {"$in": copies}, "status": "pending"}, {"$set": copy})
                )
                pending.difference_update(copies)
            outcomes.append(_finish_increments(record, len(copies)))
        if writes:
            self.items.bulk_write(writes, ordered=True, session=session)
        return outcomes

    def _finish_one(
        self, record: dict[str, Any], _id: str, session: ClientSession | None
    ) -> dict[str, Any] | None:
        """Write one item's record; return its counter increments, or None if not running."""
        fields, copy = _record_fields(record)
        written = self.items.find_one_and_update(
            {"_id": _id, "status": "running"},
            {"$set": fields, "$unset": {"lease": ""}},
            projection={"duplicates": 1},
            session=session,
        )
        if written is None:
            return None
        copies = 0
        if written.get("duplicates"):
            ids = [item_id(record["batch_id"], i) for i in written["duplicates"]]
            copies = self.items.update_many(
                {"_id": {"$in": ids}, "status": "pending"}, {"$set": copy}, session=session
            ).modified_count
        return _finish_increments(record, copies)

    def save_screenshot(self, batch_id: str, index: int, png: bytes) -> dict[str, Any]:
        """Store a page screenshot in GridFS; returns the reference kept on the item."""
        bucket = gridfs.GridFSBucket(self.db, bucket_name="screenshots")
        file_id = bucket.upload_from_stream(
            f"{item_id(batch_id, index)}.png",
            png,
            metadata={"batch_id": batch_id, "index": index, "content_type": "image/png"},
        )
        return {"gridfs_id": str(file_id), "bucket": "screenshots", "bytes": len(png)}

    def load_screenshot(self, file_id: str) -> bytes:
        bucket = gridfs.GridFSBucket(self.db, bucket_name="screenshots")
        return bucket.open_download_stream(ObjectId(file_id)).read()

    def save_domain_health(
        self, batch_id: str, worker: str, entries: list[dict[str, Any]], top: int
    ) -> None:
        """Store one worker's per-domain health; ``domains``: every worker's merged, top ``top``.

        Each worker keeps its own entries under ``domain_workers`` (at most
        ``top`` each), so that workers of the same batch add up instead of
        overwriting each other.
        """
        key = worker.replace(".", "_").replace("$", "_")
        batch = self.batches.find_one({"_id": batch_id}, {"domain_workers": 1}) or {}
        workers = {**(batch.get("domain_workers") or {}), key: entries}
        self.batches.update_one(
            {"_id": batch_id},
            {
                "$set": {
                    f"domain_workers.{key}": entries,
                    "domains": merge_domain_health(workers.values(), top),
                }
            },
        )


def merge_domain_health(
    workers: Iterable[list[dict[str, Any]]], top: int
) -> list[dict[str, Any]]:
    """Per-domain health summed over workers: the ``top`` domains with the most requests.

    Delays and breaker states are per process: the largest delay and the
    most severe state (open > slowed > closed) are shown.
    """
    merged: dict[str, dict[str, Any]] = {}
    for entries in workers:
        for entry in entries:
            seen = merged.setdefault(
                entry["domain"],
                {"domain": entry["domain"], "requests": 0, "errors": 0, "delay": 0.0,
                 "breaker": "closed"},
            )
            seen["requests"] += entry["requests"]
            seen["errors"] += entry["errors"]
            seen["delay"] = max(seen["delay"], entry["delay"])
            if BREAKER_SEVERITY[entry["breaker"]] > BREAKER_SEVERITY[seen["breaker"]]:
                seen["breaker"] = entry["breaker"]
    ranked = sorted(merged.values(), key=lambda entry: entry["requests"], reverse=True)[:top]
    for entry in ranked:
        entry["error_rate"] = round(entry["errors"] / max(entry["requests"], 1), 3)
    return ranked


def _record_fields(record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields written on the item, and those copied to its duplicates."""
    fields = {k: v for k, v in record.items() if k not in ("batch_id", "index", "url")}
    fields["finished_at"] = utcnow()
    return fields, {k: v for k, v in fields.items() if k != "attempts"}


def _finish_increments(record: dict[str, Any], copies: int) -> dict[str, Any]:
    """Counter increments for one finished item and ``copies`` duplicates sharing its record."""
    status = record["status"]
    inc: dict[str, Any] = counters_for_transition("running", status)
    for key, value in counters_for_transition("pending", status, copies).items():
        inc[key] = inc.get(key, 0) + value
    if status == "completed" and _record_count(record):
        inc["counters.records_extracted"] = _record_count(record) * (1 + copies)
    if status == "failed":
        inc["failures." + failure_code(record.get("error"))] = 1 + copies
    inc.update(_usage_increments(record))
    return inc


def _usage_increments(record: dict[str, Any]) -> dict[str, Any]:
    """Counter increments for what processing the item cost (LLM use, filtered records)."""
    tokens = record.get("tokens") or {}
    usage = {
        "counters.llm_calls": record.get("llm_calls") or 0,
        "counters.tokens_in": tokens.get("in", 0),
        "counters.tokens_out": tokens.get("out", 0),
        "counters.cost_usd": record.get("cost_usd") or 0.0,
        "counters.records_filtered": record.get("filtered_out") or 0,
    }
    return {key: value for key, value in usage.items() if value}


def _record_count(record: dict[str, Any]) -> int:
    data = record.get("data")
    if isinstance(data, list):
        return len(data)
    return 1 if data else 0
