"""The webhook events of finishing items, written in the same transaction as their records.

A crawl writes its item records in groups (:mod:`batchscraper.store.writes`); the
``item.*`` events its batch's webhook asked for (:mod:`batchscraper.events`)
go into the outbox in the same transaction as the group, one ``insert_many``,
and are sent by the service: they add no request to the crawl.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pymongo.client_session import ClientSession

from batchscraper.events import ITEM_EVENTS, item_events
from batchscraper.jsontypes import Document
from batchscraper.store.changes import PreviousRecords
from batchscraper.store.outbox import OUTBOX


class FinishEvents(PreviousRecords):
    """Outbox documents for applied item finishes."""

    def write_item_events(
        self, records: Sequence[Document], session: ClientSession | None
    ) -> None:
        """Queue the ``item.*`` events of these applied finishes (asked for by their batch)."""
        events = []
        for record in records:
            webhook = self.finish_settings(str(record["batch_id"])).get("webhook")
            if not webhook or not isinstance(webhook, Mapping):
                continue
            if ITEM_EVENTS & set(webhook.get("events") or ()):
                events += item_events(record, webhook)
        if events:
            self.db[OUTBOX].insert_many(events, ordered=False, session=session)
