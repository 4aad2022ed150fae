"""Reads: a batch's items in input order, and its counters recomputed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from batchscraper.jsontypes import Document, Query
from batchscraper.store.base import StoreBase, item_id
from batchscraper.store.transitions import ITEM_STATUSES, failure_code


class ItemReads(StoreBase):
    """Items read by ``_id`` (input position), and counters aggregated from them."""

    def iter_items(
        self, batch_id: str, start: int = 0, page: int = 500
    ) -> Iterator[Document]:
        """Every item of the batch in input order, read by ``_id`` ranges."""
        total = self.get_batch(batch_id)["counters"]["total"]
        for first in range(start, total, page):
            yield from self.items_in_range(batch_id, first, min(first + page, total))

    def items_in_range(
        self, batch_id: str, start: int, stop: int, status: str | None = None
    ) -> list[Document]:
        """The items ``start`` to ``stop - 1`` (with ``status``, if given), in input order."""
        return self.items_by_index(batch_id, range(start, stop), status)

    def items_by_index(
        self,
        batch_id: str,
        indexes: Iterable[int],
        status: str | None = None,
        projection: dict[str, int] | None = None,
    ) -> list[Document]:
        """The items at these input positions (with ``status``, if given), in input order."""
        query: Query = {"_id": {"$in": [item_id(batch_id, i) for i in indexes]}}
        if status is not None:
            query["status"] = status
        return sorted(self.items.find(query, projection), key=lambda doc: doc["index"])

    def aggregate_counters(self, batch_id: str) -> dict[str, int]:
        """Recompute the status counters from the items (slow: for checks and repair)."""
        counts: dict[str, int] = {str(status): 0 for status in ITEM_STATUSES}
        for row in self.items.aggregate(
            [{"$match": {"batch_id": batch_id}}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        ):
            counts[row["_id"]] = row["n"]
        counts["total"] = sum(counts.values())
        return counts

    def aggregate_failures(self, batch_id: str) -> dict[str, int]:
        """Recompute the failed items per error code (``failures`` on the batch) from the items."""
        rows = self.items.aggregate([
            {"$match": {"batch_id": batch_id, "status": "failed"}},
            {"$group": {"_id": "$error.code", "n": {"$sum": 1}}},
        ])
        counts: Counter[str] = Counter()
        for row in rows:
            counts[failure_code({"code": row["_id"]})] += row["n"]
        return dict(counts)
