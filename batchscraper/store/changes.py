"""The previous run's records of a group of finishing items, read in a few batched queries.

A batch that compares (``compare`` on its document) gets each finishing
record's ``change`` (:func:`batchscraper.changes.item_change`) just before
the records are written, so the change and its count go in the same write as
the item's finish (see :mod:`batchscraper.store.transitions`).

The previous record of a URL is looked up at the same input position first
(a schedule's runs repeat their URL list, so that is one ``_id`` lookup per
flush); URLs found elsewhere go through the previous batch's URL -> position
map, read once per process and kept.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Literal, overload

from batchscraper.changes import CompareSpec, item_change
from batchscraper.jsontypes import Document
from batchscraper.store.base import StoreBase, item_id, record_index

PREVIOUS_FIELDS = {"url": 1, "index": 1, "status": 1, "data": 1, "http_status": 1}


class PreviousRecords(StoreBase):
    """Changes against the previous run, attached to records about to be finished."""

    def attach_changes(self, records: Sequence[Document]) -> None:
        """Set (or clear) each record's ``change`` for the batches that compare."""
        groups: dict[str, list[Document]] = defaultdict(list)
        for record in records:
            groups[str(record["batch_id"])].append(record)
        for batch_id, group in groups.items():
            spec = self._compare_spec(batch_id)
            if spec is None:
                continue
            previous = self.previous_records(spec.to, group)
            for record in group:
                change = item_change(previous.get(str(record["url"])), record, spec.ignore_fields)
                if change is None:
                    record.pop("change", None)
                else:
                    record["change"] = change

    def previous_records(
        self, batch_id: str, records: Sequence[Mapping[str, object]]
    ) -> dict[str, Document]:
        """The records of ``batch_id`` with the URLs of ``records``, by URL."""
        wanted = {str(record["url"]) for record in records}
        ids = [item_id(batch_id, record_index(record)) for record in records]
        found = {doc["url"]: doc for doc in self.items.find({"_id": {"$in": ids}}, PREVIOUS_FIELDS)
                 if doc["url"] in wanted}
        missing = wanted - set(found)
        if missing:
            positions = self._url_positions(batch_id)
            ids = [item_id(batch_id, positions[url]) for url in missing if url in positions]
            if ids:
                found.update((doc["url"], doc)
                             for doc in self.items.find({"_id": {"$in": ids}}, PREVIOUS_FIELDS))
        return found

    def _compare_spec(self, batch_id: str) -> CompareSpec | None:
        return CompareSpec.of_batch(self.finish_settings(batch_id))

    def finish_settings(self, batch_id: str) -> Document:
        """The batch's ``compare`` and ``webhook`` (read once: they never change once stored)."""
        cache = self._change_cache("settings")
        if batch_id not in cache:
            cache[batch_id] = self.batches.find_one(
                {"_id": batch_id}, {"compare": 1, "webhook.url": 1, "webhook.secret": 1,
                                    "webhook.events": 1, "webhook.metadata": 1}
            ) or {}
        return dict(cache[batch_id])

    def _url_positions(self, batch_id: str) -> dict[str, int]:
        cache = self._change_cache("positions")
        if batch_id not in cache:
            docs = self.items.find({"batch_id": batch_id}, {"url": 1, "index": 1})
            cache[batch_id] = {doc["url"]: doc["index"] for doc in docs}
        return cache[batch_id]

    @overload
    def _change_cache(self, name: Literal["settings"]) -> dict[str, Document]: ...
    @overload
    def _change_cache(self, name: Literal["positions"]) -> dict[str, dict[str, int]]: ...

    def _change_cache(self, name: str) -> dict[str, Document] | dict[str, dict[str, int]]:
        """This store's cache ``name``, by batch id: ``settings`` (:meth:`finish_settings`),
        ``positions`` (a batch's URL -> input position)."""
        caches: dict[str, dict[str, Document] | dict[str, dict[str, int]]] = (
            self.__dict__.setdefault("_change_caches", {}))
        return caches.setdefault(name, {})
