"""Change detection between runs as components: the comparison, the change written with each
item's finish (counts on the batch equal a recount over its items), a schedule's run compared
with its previous run, and ``compare_to`` / ``ignore_fields`` refused with every problem listed.
In-process against the embedded MongoDB-wire server; assertions read the stored documents.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from scrapy.settings import Settings

from batchscraper.api.auth import Caller
from batchscraper.api.config import ApiConfig
from batchscraper.api.service import BatchService
from batchscraper.api.submit import read_submission
from batchscraper.changes import (
    CHANGE_STATUSES,
    MAX_CHANGE_VALUE_BYTES,
    bounded_values,
    item_change,
    normalised,
)
from batchscraper.cli import change_line
from batchscraper.exceptions import ForbiddenError, InvalidCompareError, InvalidScheduleError
from batchscraper.schedules.scheduler import ScheduleConfig, Scheduler
from batchscraper.schedules.service import ScheduleService
from batchscraper.schedules.store import ScheduleStore
from batchscraper.store import BatchStore, item_id
from batchscraper.store.mongo import connect
from tests.conftest import assert_counters_match_items

FIELDS = [{"field": "name", "type": "string"}, {"field": "price", "type": "number"},
          {"field": "seen_at", "type": "string"}]
URLS = [f"https://shop.example/p/{n}" for n in range(6)]
ALICE, BOB = Caller("alice"), Caller("bob")


@pytest.fixture(name="service")
def service_fixture(mongo_uri: str) -> Iterator[BatchService]:
    client = connect(mongo_uri)
    store = BatchStore(client, f"changes_{uuid.uuid4().hex[:12]}")
    store.ensure_indexes()
    settings = Settings()
    settings.setmodule("batchscraper.settings")
    yield BatchService(store, ApiConfig.from_settings(settings))
    client.drop_database(store.db.name)
    client.close()


def submit(service: BatchService, caller: Caller = ALICE, **body: Any) -> dict[str, Any]:
    body.setdefault("urls", URLS)
    body.setdefault("fields", FIELDS)
    return service.submit(caller, read_submission(body), None)[0]


def finish(store: BatchStore, batch_id: str, results: dict[int, Any]) -> None:
    """Claim every item, then finish each: a data dict (completed) or an HTTP status (failed)."""
    store.claim(batch_id, "w1", range(len(results)), 60)
    records = []
    for index, result in results.items():
        url = store.items.find_one({"_id": item_id(batch_id, index)})["url"]
        record: dict[str, Any] = {"batch_id": batch_id, "index": index, "url": url,
                                  "attempts": 1}
        if isinstance(result, dict):
            record.update(status="completed", data=result, error=None)
        else:
            record.update(status="failed", data=None, http_status=result,
                          error={"code": "HTTP_ERROR", "message": "x", "retryable": False})
        records.append(record)
    assert all(store.finish_items(records))


def changes_of(store: BatchStore, batch_id: str) -> dict[int, Any]:
    return {doc["index"]: doc.get("change") for doc in store.iter_items(batch_id)}


def assert_changes_match_items(store: BatchStore, batch_id: str) -> dict[str, int]:
    batch = assert_counters_match_items(store, batch_id)
    recount = Counter((doc.get("change") or {}).get("status") for doc in store.iter_items(batch_id))
    counts = {status: n for status, n in batch["changes"].items() if n}
    assert counts == {status: n for status, n in recount.items() if status}
    return counts


def product(name: str, price: float, seen: str = "mon") -> dict[str, Any]:
    return {"name": name, "price": price, "seen_at": seen}


def test_comparison_normalises_text_and_numbers_and_skips_ignored_fields() -> None:
    before = {"status": "completed", "data": {"name": "Red  mug\n", "price": 20, "seen_at": "1",
                                              "size": {"w": 1, "h": 2}}}
    same = {"status": "completed", "data": {"name": "Red mug", "price": 20.0, "seen_at": "2",
                                            "size": {"w": 1, "h": 3}}}
    assert item_change(before, same, ("seen_at", "size.h")) == {"status": "unchanged"}
    assert item_change(before, same, ("seen_at",)) == {
        "status": "changed", "fields": {"size": {"old": {"w": 1, "h": 2}, "new": {"w": 1, "h": 3}}}
    }
    assert normalised({"a": None, "b": " x  y "}) == {"b": "x y"}  # absent == null
    assert normalised(True) is True and normalised(1) == 1.0
    failed = {"status": "failed", "http_status": 404}
    assert item_change(None, failed) is None
    assert item_change({"status": "running"}, same) == {"status": "new"}  # never finished: none


def test_each_finish_writes_its_change_and_the_batch_counts_them(service: BatchService) -> None:
    store = service.store
    first = submit(service)
    finish(store, first["_id"], {
        0: product("Mug", 19.99), 1: product("Cup", 5), 2: product("Jar", 7),
        3: product("Pot", 9), 4: 500, 5: 404,
    })
    assert "changes" not in store.get_batch(first["_id"])  # compares nothing

    second = submit(service, compare_to=first["_id"], ignore_fields=["seen_at"])
    assert second["compare"] == {"to": first["_id"], "ignore_fields": ["seen_at"]}
    finish(store, second["_id"], {
        0: product("Mug", 17.49, "tue"),  # price changed
        1: product("Cup ", 5.0, "tue"),  # same once normalised; seen_at ignored
        2: 404,  # the page is gone
        3: 500,  # fails now
        4: product("Bowl", 3),  # failed before
        5: 404,  # failed before and now: nothing to compare
    })
    assert changes_of(store, second["_id"]) == {
        0: {"status": "changed", "fields": {"price": {"old": 19.99, "new": 17.49}}},
        1: {"status": "unchanged"},
        2: {"status": "gone"},
        3: {"status": "failed_now"},
        4: {"status": "recovered"},
        5: None,
    }
    assert assert_changes_match_items(store, second["_id"]) == {
        "changed": 1, "unchanged": 1, "gone": 1, "failed_now": 1, "recovered": 1
    }

    # retried failed items lose their change with their record, and its count
    store.finalize_batch(second["_id"])
    store.retry_failed(second["_id"])
    assert assert_changes_match_items(store, second["_id"]) == {"changed": 1, "unchanged": 1,
                                                                 "recovered": 1}
    assert changes_of(store, second["_id"])[2] is None


def test_huge_old_and_new_values_keep_only_their_sizes(service: BatchService) -> None:
    """A 6 MB field that changed: its old and new values would put the record over MongoDB's
    16 MiB (data + old + new); the change keeps their sizes, and the other fields' values."""
    store = service.store
    big = 6 * 1024 * 1024
    first = submit(service, urls=URLS[:1])
    finish(store, first["_id"], {0: product("Mug", 19.99, "a" * big)})
    second = submit(service, urls=URLS[:1], compare_to=first["_id"],
                    webhook={"url": "https://hooks.example/in", "events": ["item.changed"]})
    finish(store, second["_id"], {0: product("Mug", 17.49, "b" * big)})
    change = {"status": "changed", "fields": {
        "price": {"old": 19.99, "new": 17.49},
        "seen_at": {"values_omitted": True, "old_bytes": big + 2, "new_bytes": big + 2},
    }}
    assert changes_of(store, second["_id"]) == {0: change}
    stored = store.items.find_one({"_id": item_id(second["_id"], 0)})
    assert (stored["status"], len(stored["data"]["seen_at"])) == ("completed", big)
    assert assert_changes_match_items(store, second["_id"]) == {"changed": 1}
    (event,) = store.db["webhook_outbox"].find({"batch_id": second["_id"]})
    assert json.loads(event["body"])["data"]["change"] == change
    assert change_line({"index": 0, "url": URLS[0], "change": change}) == (
        f"     0  changed    {URLS[0]}  price: 19.99 -> 17.49  "
        f"seen_at: ({big + 2} -> {big + 2} bytes, values omitted)")

    # the largest go first, until what is kept fits; values under the bound are all kept
    half = MAX_CHANGE_VALUE_BYTES // 2
    fields = {"a": {"old": "x" * half, "new": "y" * half}, "b": {"old": 1, "new": 2},
              "c": {"old": "x" * (half // 2), "new": "y" * (half // 2)}}
    assert bounded_values(fields, MAX_CHANGE_VALUE_BYTES) == {
        "a": {"values_omitted": True, "old_bytes": half + 2, "new_bytes": half + 2},
        "b": fields["b"], "c": fields["c"]}
    small = {"b": fields["b"], "c": fields["c"]}
    assert bounded_values(small, MAX_CHANGE_VALUE_BYTES) == small


def test_urls_at_other_positions_and_new_urls_find_their_previous_record(
    service: BatchService,
) -> None:
    store = service.store
    first = submit(service, urls=URLS[:3])
    finish(store, first["_id"], {0: product("A", 1), 1: product("B", 2), 2: product("C", 3)})
    # reordered, one URL dropped, one added, one listed twice (its copy shares the change)
    urls = [URLS[2], URLS[5], URLS[0], URLS[0]]
    second = submit(service, urls=urls, compare_to=first["_id"])
    finish(store, second["_id"], {0: product("C", 3), 1: product("F", 6), 2: product("A", 1.5)})
    assert changes_of(store, second["_id"]) == {
        0: {"status": "unchanged"},
        1: {"status": "new"},
        2: {"status": "changed", "fields": {"price": {"old": 1, "new": 1.5}}},
        3: {"status": "changed", "fields": {"price": {"old": 1, "new": 1.5}}},
    }
    assert assert_changes_match_items(store, second["_id"]) == {
        "unchanged": 1, "new": 1, "changed": 2
    }


def test_bad_compare_settings_are_refused_with_every_problem_and_nothing_stored(
    service: BatchService,
) -> None:
    store = service.store
    mine = submit(service)
    other_schema = submit(service, fields=[{"field": "title", "type": "string"}])
    bobs = submit(service, BOB)
    before = (store.batches.count_documents({}), store.items.count_documents({}))

    with pytest.raises(InvalidCompareError) as refused:
        submit(service, compare_to=other_schema["_id"], ignore_fields=["seen_at", "colour", 3])
    assert refused.value.http_status == 422
    assert [(p["field"], p["code"]) for p in refused.value.details] == [
        ("ignore_fields[1]", "INVALID_COMPARE"),
        ("ignore_fields[2]", "INVALID_COMPARE"),
        ("compare_to", "SCHEMA_MISMATCH"),
    ]
    for compare_to, code in (("b_" + "0" * 32, "NOT_FOUND"), ("yesterday", "INVALID_COMPARE")):
        with pytest.raises(InvalidCompareError) as refused:
            submit(service, compare_to=compare_to)
        assert [(p["field"], p["code"]) for p in refused.value.details] == [("compare_to", code)]
    with pytest.raises(InvalidCompareError):
        submit(service, compare_to=mine["_id"], ignore_fields="seen_at")
    with pytest.raises(ForbiddenError):
        submit(service, compare_to=bobs["_id"])
    assert (store.batches.count_documents({}), store.items.count_documents({})) == before


def test_a_schedules_run_compares_with_its_previous_run(service: BatchService) -> None:
    store = service.store
    config = ScheduleConfig(enabled=True, interval=1, misfire_grace=60, seconds_field=False)
    scheduler = Scheduler(ScheduleStore(store.db), service, config)
    schedules = ScheduleService(scheduler.store, scheduler, service)
    schedule, _ = schedules.create(ALICE, {
        "cron": "0 3 * * *",
        "batch": {"urls": URLS[:2], "fields": FIELDS, "ignore_fields": ["seen_at"]},
    })
    first = schedules.run_now(ALICE, schedule["_id"])
    assert "compare" not in first  # nothing before it
    finish(store, first["_id"], {0: product("A", 1), 1: product("B", 2)})
    second = schedules.run_now(ALICE, schedule["_id"])
    assert second["compare"] == {"to": first["_id"], "ignore_fields": ["seen_at"]}
    finish(store, second["_id"], {0: product("A", 1, "tue"), 1: product("B", 2.5)})
    assert assert_changes_match_items(store, second["_id"]) == {"unchanged": 1, "changed": 1}
    third = schedules.run_now(ALICE, schedule["_id"])
    assert third["compare"]["to"] == second["_id"]

    # a template's compare settings are checked when the schedule is stored
    with pytest.raises(InvalidScheduleError) as refused:
        schedules.create(ALICE, {"cron": "0 3 * * *", "batch": {
            "urls": URLS, "fields": FIELDS, "compare_to": "b_" + "1" * 32,
            "ignore_fields": ["nope"]}})
    assert {(p["field"], p["code"]) for p in refused.value.details} == {
        ("batch.compare_to", "NOT_FOUND"), ("batch.ignore_fields[0]", "INVALID_COMPARE")
    }
    assert set(CHANGE_STATUSES) == set(store.get_batch(third["_id"])["changes"])
