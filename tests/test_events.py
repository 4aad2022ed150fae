"""Event webhooks as components: ``webhook.events`` and ``metadata`` checked at submit (every
problem listed, nothing stored), ``item.*`` events written in the same transaction as the item's
record (a replayed finish writes none), one ``batch.started`` per run, ``batch.completed`` only
when asked for. In-process against the embedded MongoDB-wire server; assertions read the outbox.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from batchscraper.exceptions import InvalidWebhookError
from batchscraper.store import BatchStore
from batchscraper.store.outbox import OUTBOX
from tests.test_changes import FIELDS, finish, product, service_fixture, submit  # noqa: F401

HOOK = "https://hooks.example/batches"


def outbox(store: BatchStore, batch_id: str) -> list[dict[str, Any]]:
    return sorted(store.db[OUTBOX].find({"batch_id": batch_id}), key=lambda e: e["_id"])


def test_item_events_go_with_their_records_and_carry_the_metadata(service: Any) -> None:
    store = service.store
    first = submit(service, urls=["https://shop.example/p/0", "https://shop.example/p/1"])
    finish(store, first["_id"], {0: product("Mug", 19.99), 1: product("Cup", 5)})
    webhook = {"url": HOOK, "events": ["batch.started", "item.changed", "item.failed"],
               "metadata": {"customer": "acme", "run": 7}}
    second = submit(service, urls=["https://shop.example/p/0", "https://shop.example/p/1",
                                   "https://shop.example/p/2"],
                    compare_to=first["_id"], webhook=webhook)
    batch_id = second["_id"]
    store.mark_running(batch_id, "job1")
    store.mark_running(batch_id, "job2")  # a second job of the same run: no second event
    finish(store, batch_id, {0: product("Mug", 17.49), 1: product("Cup", 5), 2: 404})
    events = outbox(store, batch_id)
    assert [(e["_id"], e["type"]) for e in events] == [
        (f"msg_{batch_id}_0_1_item.changed", "item.changed"),
        (f"msg_{batch_id}_2_1_item.failed", "item.failed"),
        (f"msg_{batch_id}_started_0", "batch.started"),
    ]
    changed = json.loads(events[0]["body"])
    assert changed["metadata"] == {"customer": "acme", "run": 7}
    assert changed["data"]["change"] == {
        "status": "changed", "fields": {"price": {"old": 19.99, "new": 17.49}}
    }
    assert (changed["data"]["index"], changed["data"]["url"]) == (0, "https://shop.example/p/0")
    assert all(e["status"] == "pending" and e["secret"].startswith("whsec_") for e in events)

    # a replayed finish is not applied, so it writes no event
    record = {"batch_id": batch_id, "index": 0, "url": "https://shop.example/p/0",
              "status": "completed", "data": product("Mug", 1), "attempts": 1}
    assert store.finish_items([record]) == [False]
    # the batch's end: batch.completed was not asked for
    store.finalize_batch(batch_id)
    assert len(outbox(store, batch_id)) == 3


def test_batch_completed_carries_the_metadata_and_is_the_default(service: Any) -> None:
    store = service.store
    batch = submit(service, urls=["https://shop.example/p/0"],
                   webhook={"url": HOOK, "metadata": {"team": "prices"}})
    store.mark_running(batch["_id"])
    finish(store, batch["_id"], {0: product("Mug", 1)})
    store.finalize_batch(batch["_id"])
    (event,) = outbox(store, batch["_id"])
    body = json.loads(event["body"])
    assert (body["type"], body["metadata"]) == ("batch.completed", {"team": "prices"})


def test_bad_events_and_metadata_are_refused_with_every_problem(service: Any) -> None:
    store = service.store
    before = store.batches.count_documents({})
    with pytest.raises(InvalidWebhookError) as refused:
        submit(service, webhook={"url": "ftp://x", "secret": "nope",
                                 "events": ["item.changed", "item.exploded", 3],
                                 "metadata": ["not", "an", "object"]})
    assert refused.value.http_status == 422
    assert [(p["field"], p["code"]) for p in refused.value.details] == [
        ("webhook.url", "INVALID_WEBHOOK"), ("webhook.secret", "INVALID_WEBHOOK"),
        ("webhook.events[1]", "INVALID_WEBHOOK"), ("webhook.events[2]", "INVALID_WEBHOOK"),
        ("webhook.metadata", "INVALID_WEBHOOK"),
    ]
    for events, metadata in (([], None), (None, {"x": "y" * 5000})):
        with pytest.raises(InvalidWebhookError):
            submit(service, webhook={"url": HOOK, "events": events, "metadata": metadata})
    assert store.batches.count_documents({}) == before
