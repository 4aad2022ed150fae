"""Reads: a batch's items in input order, its counters recomputed, and lists of batches."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import cast

from pymongo import ASCENDING, DESCENDING

from batchscraper.jsontypes import Document, Query
from batchscraper.store.base import StoreBase, item_id
from batchscraper.store.documents import ItemDocument
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

    def item(self, batch_id: str, index: int, fields: Iterable[str]) -> ItemDocument | None:
        """The item at input position ``index``, with only ``fields`` read."""
        doc = self.items.find_one({"_id": item_id(batch_id, index)}, dict.fromkeys(fields, 1))
        return cast("ItemDocument | None", doc)

    def item_fields(
        self,
        batch_id: str,
        fields: Iterable[str],
        *,
        status: str | None = None,
        updated_after: dt.datetime | None = None,
    ) -> Iterator[ItemDocument]:
        """The batch's items (with ``status``, or updated after ``updated_after``), only
        ``fields`` read. One indexed condition per read: the embedded server scans the whole
        collection for a query beyond its index, so callers check the other conditions."""
        query: Query = {"batch_id": batch_id}
        if updated_after is not None:
            query["updated_at"] = {"$gt": updated_after}
        elif status is not None:
            query["status"] = status
        for doc in self.items.find(query, dict.fromkeys(fields, 1)):
            yield cast(ItemDocument, doc)

    def holds_live_lease(self, batch_id: str, now: dt.datetime) -> bool:
        """Whether an item of the batch is leased or running under a lease still valid."""
        return any(
            self.items.find_one(
                {"batch_id": batch_id, "status": status, "lease.until": {"$gt": now}}, {"_id": 1}
            ) is not None
            for status in ("leased", "running")
        )

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


class BatchReads(StoreBase):
    """Batches as lists read them: a page of them, candidates of a search, some fields."""

    def ensure_list_index(self) -> None:
        """Batch lists filter by owner and status, newest first."""
        self.batches.create_index(
            [("owner", ASCENDING), ("status", ASCENDING), ("created_at", DESCENDING)])

    def batch_fields(self, batch_id: str, fields: Iterable[str]) -> Document | None:
        """The batch with only ``fields`` read (None: no such batch)."""
        return self.batches.find_one({"_id": batch_id}, dict.fromkeys(fields, 1))

    def batch_page(
        self, query: Mapping[str, object], without: Mapping[str, int], page: int, limit: int
    ) -> tuple[list[Document], int]:
        """One page of the batches ``query`` matches, newest first (fields ``without`` left
        out), and how many match."""
        total = self.batches.count_documents(query)
        cursor = (
            self.batches.find(query, dict(without))
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .skip((page - 1) * limit)
            .limit(limit)
        )
        return list(cursor), total

    def newest_batches(self, query: Mapping[str, object], fields: Mapping[str, int]
                       ) -> Iterator[Document]:
        """Every batch ``query`` matches, newest first, with the ``fields`` projection."""
        yield from self.batches.find(query, dict(fields)).sort(
            [("created_at", DESCENDING), ("_id", DESCENDING)])

    def batches_by_id(self, batch_ids: list[str], without: Mapping[str, int]
                      ) -> dict[str, Document]:
        """These batches by id (fields ``without`` left out); unknown ids are absent."""
        return {str(doc["_id"]): doc
                for doc in self.batches.find({"_id": {"$in": batch_ids}}, dict(without))}

    def unfinished_api_batches(self, statuses: Iterable[str], fields: Iterable[str]
                               ) -> Iterator[Document]:
        """The batches submitted through the API that are in one of ``statuses``."""
        yield from self.batches.find({"status": {"$in": list(statuses)}, "source": "api"},
                                     dict.fromkeys(fields, 1))
