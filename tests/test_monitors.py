"""Monitors as components: rules checked at submit (every problem listed, nothing stored), judged
once when the batch ends, results on the batch, ``batch.alert`` in the outbox with the failed
ones. In-process against the embedded MongoDB-wire server; assertions read stored documents.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from batchscraper.exceptions import InvalidMonitorsError
from batchscraper.monitors import field_presence
from batchscraper.store.outbox import OUTBOX
from tests.test_changes import finish, product, service_fixture, submit  # noqa: F401

HOOK = "https://hooks.example/batches"
URLS = [f"https://shop.example/p/{n}" for n in range(4)]
RULES = {"min_completed_ratio": 0.7, "min_field_coverage": {"price": 0.9, "name": 1},
         "max_error_ratio": {"HTTP_ERROR": 0.2}, "min_records": 3}


def test_field_presence_counts_records_of_list_pages_and_empty_values_as_missing() -> None:
    datas = [{"a": "x", "b": {"c": 1}}, [{"a": " "}, {"a": [], "b": {"c": None}}], None]
    assert field_presence(datas, ["a", "b.c"]) == ({"a": 1, "b.c": 1}, 3)


def test_monitors_are_judged_when_the_batch_ends_and_a_failure_alerts(service: Any) -> None:
    store = service.store
    batch = submit(service, urls=URLS, monitors=RULES,
                   webhook={"url": HOOK, "events": ["batch.alert", "batch.completed"],
                            "metadata": {"shop": "a"}})
    batch_id = batch["_id"]
    assert batch["monitor_rules"] == RULES
    # the site stopped serving the price on one page, and one page fails
    finish(store, batch_id, {0: product("A", 1), 1: product("B", 2),
                             2: {"name": "C", "price": None, "seen_at": "x"}, 3: 404})
    assert store.finalize_batch(batch_id) == "partial"
    stored = store.get_batch(batch_id)["monitors"]
    assert stored == [
        {"name": "min_completed_ratio", "value": 0.75, "threshold": 0.7, "ok": True},
        {"name": "max_error_ratio.HTTP_ERROR", "value": 0.25, "threshold": 0.2, "ok": False},
        {"name": "min_field_coverage.price", "value": 0.6667, "threshold": 0.9, "ok": False},
        {"name": "min_field_coverage.name", "value": 1.0, "threshold": 1, "ok": True},
        {"name": "min_records", "value": 3, "threshold": 3, "ok": True},
    ]
    events = {e["type"]: e for e in store.db[OUTBOX].find({"batch_id": batch_id})}
    assert set(events) == {"batch.alert", "batch.completed"}
    assert events["batch.alert"]["_id"] == f"msg_{batch_id}_alert_1"
    alert = json.loads(events["batch.alert"]["body"])
    assert alert["metadata"] == {"shop": "a"}
    assert [m["name"] for m in alert["data"]["monitors"]] == [
        "max_error_ratio.HTTP_ERROR", "min_field_coverage.price"
    ]
    assert json.loads(events["batch.completed"]["body"])["data"]["monitors"] == stored
    assert store.finalize_batch(batch_id) == "partial"  # judged once per run
    assert store.db[OUTBOX].count_documents({"batch_id": batch_id}) == 2


def test_passing_monitors_raise_no_alert(service: Any) -> None:
    store = service.store
    batch = submit(service, urls=URLS[:1], monitors={"min_records": 1},
                   webhook={"url": HOOK, "events": ["batch.alert"]})
    finish(store, batch["_id"], {0: product("A", 1)})
    store.finalize_batch(batch["_id"])
    assert [m["ok"] for m in store.get_batch(batch["_id"])["monitors"]] == [True]
    assert store.db[OUTBOX].count_documents({"batch_id": batch["_id"]}) == 0


def test_bad_monitors_are_refused_with_every_problem_and_nothing_stored(service: Any) -> None:
    store = service.store
    before = store.batches.count_documents({})
    with pytest.raises(InvalidMonitorsError) as refused:
        submit(service, monitors={"min_completed_ratio": 1.5, "min_records": -1,
                                  "min_field_coverage": {"colour": 0.9, "price": "high"},
                                  "max_error_ratio": {"http error": 0.1}, "max_latency": 3})
    assert refused.value.http_status == 422
    assert [p["field"] for p in refused.value.details] == [
        "monitors.min_completed_ratio", "monitors.min_records",
        "monitors.min_field_coverage.colour", "monitors.min_field_coverage.price",
        "monitors.max_error_ratio.http error", "monitors.max_latency",
    ]
    assert {p["code"] for p in refused.value.details} == {"INVALID_MONITORS"}
    with pytest.raises(InvalidMonitorsError):
        submit(service, monitors=[])
    assert store.batches.count_documents({}) == before
