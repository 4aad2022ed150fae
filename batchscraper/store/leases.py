"""Leases: which worker runs which item, and until when."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable, Iterator
from typing import cast

from batchscraper.jsontypes import Document
from batchscraper.store.base import utcnow
from batchscraper.store.documents import Lease
from batchscraper.store.transitions import HELD, HeldItem, ItemTransitions

logger = logging.getLogger(__name__)


class ItemLeases(ItemTransitions):
    """Renewing and reclaiming leases, and how long a worker should wait for work.

    Claiming and releasing items change their status: :mod:`~batchscraper.store.transitions`.
    """

    def reclaim_expired(
        self, batch_id: str, worker: str, limit: int, lease_seconds: float
    ) -> list[Document]:
        """Take over leased or running items whose lease expired (their worker died)."""
        now = utcnow()
        stale = [
            doc
            for doc in self._held_leases(batch_id)
            if doc.get("lease") and doc["lease"]["until"] < now
        ][:limit]
        taken = []
        for doc in stale:
            lease: Lease = {
                "worker": worker,
                "token": uuid.uuid4().hex,
                "until": now + dt.timedelta(seconds=lease_seconds),
            }
            found = self.reclaim(batch_id, doc, lease)
            if found is not None:
                taken.append(found)
        if taken:
            logger.info("Reclaimed %d items with expired leases in %s", len(taken), batch_id)
        return taken

    def has_claimable(self, batch_id: str) -> bool:
        """Whether any non-duplicate item of the batch is still pending."""
        # only the (batch_id, status) pair: the embedded server scans the whole
        # collection when a query adds any other field
        pending = self.items.find({"batch_id": batch_id, "status": "pending"}, {"dup_of": 1})
        return any("dup_of" not in doc for doc in pending)

    def lease_wait(self, batch_id: str, worker: str) -> float | None:
        """How long a worker that found nothing to claim should wait before looking again.

        0 when pending items can be claimed; while other workers hold leased or
        running items, the seconds until the first of their leases expires (a dead
        worker's items are then reclaimed); None when the batch has no work left.
        """
        if self.has_claimable(batch_id):
            return 0.0
        now = utcnow()
        expiries = [
            doc["lease"]["until"]
            for doc in self._held_leases(batch_id)
            if doc.get("lease") and doc["lease"]["worker"] != worker
        ]
        if not expiries:
            return None
        return max((min(expiries) - now).total_seconds(), 0.0)

    def _held_leases(self, batch_id: str) -> Iterator[HeldItem]:
        """The leased and running items of a batch with their leases (through the status
        index: one query per status)."""
        for status in HELD:
            query = {"batch_id": batch_id, "status": status.value}
            # their _id and status, and lease (kept on a held item)
            yield from cast("Iterable[HeldItem]", self.items.find(query, {"lease": 1, "status": 1}))

    def renew_leases(self, worker: str, ids: list[str], lease_seconds: float) -> None:
        if ids:
            until = utcnow() + dt.timedelta(seconds=lease_seconds)
            self.items.update_many(
                {"_id": {"$in": ids}, "status": {"$in": [s.value for s in HELD]},
                 "lease.worker": worker},
                {"$set": {"lease.until": until}},
            )
