"""Which webhook events a batch sends, and the outbox documents of its item and start events.

``webhook.events`` picks among :data:`EVENT_TYPES` (default: ``batch.completed``
only); ``webhook.metadata`` (a JSON object of at most
:data:`MAX_METADATA_BYTES`) is echoed in every payload. Every event goes
through the same signed, persisted outbox as ``batch.completed``
(:mod:`batchscraper.webhooks`), with an id that is stable for the event, so
a receiver de-duplicates on ``webhook-id``:

- ``batch.started``: ``msg_<batch>_started_<run>``, written when the batch first
  goes to running in a run (a duplicate write fails on ``_id``);
- ``item.completed`` / ``item.failed`` / ``item.changed``:
  ``msg_<batch>_<index>_<attempt>_<event>``, written in the same transaction as
  the item's finished record (a replayed finish is not applied, so it writes
  no event). ``item.changed`` is sent for a ``change`` other than
  ``unchanged`` (see :mod:`batchscraper.changes`).
"""

from __future__ import annotations

import json
from collections.abc import Container, Mapping
from typing import TypeGuard

from batchscraper.webhooks import BATCH_COMPLETED, OutboxEvent, batch_links, outbox_event

BATCH_STARTED = "batch.started"
ITEM_COMPLETED = "item.completed"
ITEM_FAILED = "item.failed"
ITEM_CHANGED = "item.changed"
BATCH_ALERT = "batch.alert"
EVENT_TYPES = (BATCH_STARTED, ITEM_COMPLETED, ITEM_FAILED, ITEM_CHANGED, BATCH_COMPLETED,
               BATCH_ALERT)
DEFAULT_EVENTS = (BATCH_COMPLETED,)
ITEM_EVENTS = frozenset({ITEM_COMPLETED, ITEM_FAILED, ITEM_CHANGED})
MAX_METADATA_BYTES = 4096


def webhook_option_problems(value: Mapping[str, object]) -> list[dict[str, str]]:
    """What is wrong with a webhook body's ``events`` and ``metadata`` (each problem once)."""
    problems = []
    events = value.get("events")
    if events is not None:
        if not isinstance(events, list) or not events:
            problems.append(("webhook.events", f"a non-empty list among {list(EVENT_TYPES)}"))
        else:
            problems += [(f"webhook.events[{n}]", f"one of {list(EVENT_TYPES)}")
                         for n, event in enumerate(events) if event not in EVENT_TYPES]
    metadata = value.get("metadata")
    if metadata is not None:
        size = len(json.dumps(metadata, separators=(",", ":")).encode())
        if not isinstance(metadata, dict) or size > MAX_METADATA_BYTES:
            problems.append(("webhook.metadata",
                             f"a JSON object of at most {MAX_METADATA_BYTES} bytes"))
    return [{"field": field, "code": "INVALID_WEBHOOK", "message": message}
            for field, message in problems]


def wants(webhook: object, event: str) -> TypeGuard[Mapping[str, object]]:
    """Whether the batch's webhook (its stored setting, or None) asked for ``event``."""
    if not webhook or not isinstance(webhook, Mapping) or not webhook.get("url"):
        return False
    events = webhook.get("events") or DEFAULT_EVENTS
    return isinstance(events, Container) and event in events


def item_events(
    record: Mapping[str, object], webhook: Mapping[str, object] | None
) -> list[OutboxEvent]:
    """The outbox documents of one applied item finish that its batch's webhook asked for."""
    if not webhook:
        return []
    status = record.get("status")
    change = record.get("change") or {}
    types = [ITEM_COMPLETED if status == "completed" else ITEM_FAILED]
    if isinstance(change, Mapping) and change.get("status") not in (None, "unchanged"):
        types.append(ITEM_CHANGED)
    batch_id, index = str(record["batch_id"]), record["index"]
    data = {"batch_id": batch_id, "index": index, "url": record.get("url"), "status": status,
            "data": record.get("data"), "error": record.get("error"), "change": change or None,
            "links": batch_links(batch_id)}
    return [
        outbox_event(f"msg_{batch_id}_{index}_{record.get('attempts', 0)}_{event}", event,
                     batch_id, webhook, data)
        for event in types if wants(webhook, event)
    ]


def batch_started_event(batch: Mapping[str, object]) -> OutboxEvent | None:
    """The ``batch.started`` outbox document of the batch's current run, if asked for."""
    webhook = batch.get("webhook")
    if not wants(webhook, BATCH_STARTED):
        return None
    batch_id = str(batch["_id"])
    run = batch.get("finished_runs", 0)
    data = {"batch_id": batch["_id"], "status": "running", "counters": batch.get("counters"),
            "started_at": batch.get("started_at"), "links": batch_links(batch_id)}
    return outbox_event(f"msg_{batch_id}_started_{run}", BATCH_STARTED, batch_id, webhook, data)
