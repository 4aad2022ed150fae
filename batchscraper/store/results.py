"""Results: what a worker writes back for a batch.

Screenshots and per-domain health. Item records are written with their
status change: :meth:`~batchscraper.store.transitions.ItemTransitions.finish_items`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypedDict

import gridfs
from bson import ObjectId

from batchscraper.store.base import (
    StoreBase,
    item_id,
)
from batchscraper.store.documents import ScreenshotRef

BREAKER_SEVERITY = {"closed": 0, "slowed": 1, "open": 2}


class DomainHealthEntry(TypedDict):
    """One domain's requests, errors, download delay and breaker state, as a worker saw them."""

    domain: str
    requests: int
    errors: int
    delay: float
    breaker: str


class MergedDomainHealth(DomainHealthEntry, total=False):
    """A domain's health summed over a batch's workers, with its error rate."""

    error_rate: float


class ItemResults(StoreBase):
    """Screenshots and domain health."""

    def save_screenshot(self, batch_id: str, index: int, png: bytes) -> ScreenshotRef:
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
        self, batch_id: str, worker: str, entries: list[DomainHealthEntry], top: int
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
    workers: Iterable[list[DomainHealthEntry]], top: int
) -> list[MergedDomainHealth]:
    """Per-domain health summed over workers: the ``top`` domains with the most requests.

    Delays and breaker states are per process: the largest delay and the
    most severe state (open > slowed > closed) are shown.
    """
    merged: dict[str, MergedDomainHealth] = {}
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
