"""The webhook outbox (``webhook_outbox``; blocking pymongo: call it from a thread).

Events are written to it with the batch change that causes them (:mod:`.batches`,
:mod:`.events`); the Scrapyd process's delivery service leases the due ones
(:meth:`WebhookOutbox.claim_due`), sends them and records each attempt on the event
and on its batch (:meth:`WebhookOutbox.record_attempt`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from pymongo import ASCENDING, ReturnDocument
from pymongo.database import Database

from batchscraper.jsontypes import Document
from batchscraper.webhooks import WebhookConfig

OUTBOX = "webhook_outbox"
CLAIM_LIMIT = 20  # events taken per outbox scan

class WebhookOutbox:
    """The ``webhook_outbox`` collection (blocking pymongo: call it from a thread)."""

    def __init__(self, db: Database[Document], config: WebhookConfig) -> None:
        self.events = db[OUTBOX]
        self.batches = db["batches"]
        self.config = config

    def ensure_indexes(self) -> None:
        self.events.create_index([("status", ASCENDING), ("next_attempt_at", ASCENDING)])

    def claim_due(self, limit: int = CLAIM_LIMIT) -> list[Document]:
        """Lease the pending events that are due, so one Scrapyd sends each at a time.

        The lease outlasts an attempt (twice its timeout); an event whose node died
        mid-attempt, its attempt unrecorded, is due again once the lease ends.
        """
        now = dt.datetime.now(dt.UTC)
        due = {"status": "pending", "next_attempt_at": {"$lte": now}, "lease_until": {"$lte": now}}
        lease = now + dt.timedelta(seconds=self.config.timeout * 2)
        claimed = []
        for doc in self.events.find(due, {"_id": 1}).limit(limit):
            event = self.events.find_one_and_update(
                {"_id": doc["_id"], **due},
                {"$set": {"lease_until": lease}},
                return_document=ReturnDocument.AFTER,
            )
            if event is not None:
                claimed.append(event)
        return claimed

    def record_attempt(self, event: Mapping[str, object], attempt: Mapping[str, object]) -> str:
        """Store one attempt on the event and on its batch; returns the event's new status."""
        done = event["attempts"]
        assert isinstance(done, int)  # an OutboxEvent's count
        attempts = done + 1
        now = dt.datetime.now(dt.UTC)
        if attempt["ok"]:
            status, update = "delivered", {"delivered_at": now}
        elif attempts >= self.config.max_attempts or attempt.get("retryable") is False:
            status, update = "failed", {}
        else:
            status = "pending"
            update = {"next_attempt_at": now + dt.timedelta(seconds=self.config.delay(attempts))}
        entry = {"event_id": event["_id"], "type": event["type"], "attempt": attempts, **attempt}
        self.events.update_one(
            {"_id": event["_id"]},
            {
                "$set": {"status": status, "attempts": attempts, "lease_until": now, **update},
                "$push": {"log": {"$each": [entry], "$slice": -self.config.history}},
            },
        )
        self.batches.update_one(
            {"_id": event["batch_id"]},
            {
                "$set": {"webhook.status": status, "webhook.last_event_id": event["_id"]},
                "$push": {"webhook.deliveries": {"$each": [entry], "$slice": -self.config.history}},
            },
        )
        return status
