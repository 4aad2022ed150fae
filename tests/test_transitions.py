"""The item state machine as a component: its table, and each store operation that moves items.

In-process against the embedded MongoDB-wire server: after every operation the
batch's counters (and failures per code) equal a recount over its items.
"""

from __future__ import annotations

import itertools

import pytest

from batchscraper.inputs import parse_batch
from batchscraper.store import BatchStore, ItemStatus, counters_for_transition, item_id
from batchscraper.store.transitions import (
    CREATIONS,
    TRANSITIONS,
    ItemTransitions,
    TransitionError,
    check_transition,
)
from tests.conftest import assert_counters_match_items

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}}


def new_batch(store: BatchStore, n: int) -> str:
    spec = parse_batch([f"https://shop.example/p/{i}" for i in range(n)], SCHEMA)
    return str(store.create_batch(spec)["_id"])


def record(batch_id: str, index: int, status: str, code: str | None = None) -> dict:
    error = {"code": code, "message": "test", "retryable": True} if code else None
    return {
        "batch_id": batch_id, "index": index, "url": f"https://shop.example/p/{index}",
        "status": status, "data": {"name": "x"} if status == "completed" else None,
        "error": error, "attempts": 1,
    }


def counts(store: BatchStore, batch_id: str) -> dict[str, int]:
    batch = assert_counters_match_items(store, batch_id)
    return {status: batch["counters"][status] for status in ItemStatus if batch["counters"][status]}


@pytest.mark.parametrize("old,new", list(itertools.product(ItemStatus, ItemStatus)))
def test_the_table_allows_exactly_its_moves(old: ItemStatus, new: ItemStatus):
    if (old, new) in TRANSITIONS:
        check_transition(old, new)
        assert counters_for_transition(old, new, 2) == {
            f"counters.{old.value}": -2, f"counters.{new.value}": 2
        }
    else:
        with pytest.raises(TransitionError):
            check_transition(old, new)


def test_the_table_names_the_operations_that_make_its_moves():
    operations = {
        name for name, value in vars(ItemTransitions).items()
        if callable(value) and not name.startswith("_")
    }
    named = {name for names in TRANSITIONS.values() for name in names}
    # each operation makes a move of the table or adds items, and only they do
    assert named | set(CREATIONS) == operations and not named & set(CREATIONS)


def test_claim_release_finish_cancel_move_items_and_counters_together(store: BatchStore):
    batch_id = new_batch(store, 5)
    assert counts(store, batch_id) == {"pending": 5}

    claimed = store.claim(batch_id, "w1", range(0, 4), 60)
    assert [doc["index"] for doc in claimed] == [0, 1, 2, 3]
    assert store.claim(batch_id, "w2", range(0, 4), 60) == []  # already leased
    assert counts(store, batch_id) == {"pending": 1, "leased": 4}
    ids = [item_id(batch_id, i) for i in range(4)]
    assert store.start(batch_id, "w2", ids[:2]) == 0  # not its lease
    assert store.start(batch_id, "w1", ids[:2]) == 2  # their requests reached the downloader
    assert store.start(batch_id, "w1", ids[:2]) == 0  # already running
    assert counts(store, batch_id) == {"pending": 1, "leased": 2, "running": 2}

    assert store.release(batch_id, "w2", [item_id(batch_id, 3)]) == 0  # not its lease
    assert store.release(batch_id, "w1", [item_id(batch_id, 3)]) == 1
    assert counts(store, batch_id) == {"pending": 2, "leased": 1, "running": 2}

    done = [record(batch_id, 0, "completed"), record(batch_id, 1, "failed", "HTTP_ERROR")]
    assert store.finish_items(done) == [True, True]
    assert store.finish_items(done) == [False, False]  # a replay counts nothing
    assert counts(store, batch_id) == {"pending": 2, "leased": 1, "completed": 1, "failed": 1}
    assert store.get_batch(batch_id)["failures"] == {"HTTP_ERROR": 1}

    assert store.cancel_unfinished(batch_id, "stop") == 3
    assert counts(store, batch_id) == {"completed": 1, "failed": 1, "cancelled": 3}
    assert store.finish_items([record(batch_id, 2, "completed")]) == [False]  # was cancelled
    assert counts(store, batch_id) == {"completed": 1, "failed": 1, "cancelled": 3}


def test_a_record_with_a_status_no_move_allows_changes_nothing(store: BatchStore):
    batch_id = new_batch(store, 1)
    store.claim(batch_id, "w1", range(1), 60)
    with pytest.raises(TransitionError):
        store.finish_items([record(batch_id, 0, "pending")])
    assert counts(store, batch_id) == {"leased": 1}
    assert store.items.find_one({"_id": item_id(batch_id, 0)})["status"] == "leased"


def test_an_item_can_finish_leased_or_running_and_stamps_updated_at(store: BatchStore):
    batch_id = new_batch(store, 3)
    store.claim(batch_id, "w1", range(3), 60)
    stamps = {doc["index"]: doc["updated_at"] for doc in store.iter_items(batch_id)}
    store.start(batch_id, "w1", [item_id(batch_id, 1)])
    # refused before the downloader (leased), and finished in flight (running)
    done = [record(batch_id, 0, "failed", "FETCH_BLOCKED"), record(batch_id, 1, "completed")]
    assert store.finish_items(done) == [True, True]
    assert counts(store, batch_id) == {"leased": 1, "completed": 1, "failed": 1}
    after = {doc["index"]: doc["updated_at"] for doc in store.iter_items(batch_id)}
    assert after[0] > stamps[0] and after[1] > stamps[1] and after[2] == stamps[2]
    # each finish counts in its minute of the timeline (what the dashboard's chart draws)
    timeline = store.get_batch(batch_id)["timeline"]
    assert sum(timeline.values()) == 2
    minute = int(after[1].timestamp() // 60)
    assert set(timeline) <= {str(minute - 1), str(minute), str(minute + 1)}


def test_a_dead_workers_items_are_reclaimed_as_leased(store: BatchStore):
    batch_id = new_batch(store, 3)
    store.claim(batch_id, "dead", range(3), -1)  # leases that already expired
    store.start(batch_id, "dead", [item_id(batch_id, 0)])
    assert counts(store, batch_id) == {"leased": 2, "running": 1}
    taken = store.reclaim_expired(batch_id, "w2", 10, 60)
    assert sorted(doc["index"] for doc in taken) == [0, 1, 2]
    assert {doc["lease"]["worker"] for doc in taken} == {"w2"}
    assert counts(store, batch_id) == {"leased": 3}
    assert store.reclaim_expired(batch_id, "w3", 10, 60) == []  # live leases now
    assert store.release(batch_id, "w2", [item_id(batch_id, i) for i in range(3)]) == 3
    assert counts(store, batch_id) == {"pending": 3}


def test_retry_moves_failed_items_and_their_failure_counts_back(store: BatchStore):
    batch_id = new_batch(store, 3)
    store.claim(batch_id, "w1", range(3), 60)
    store.finish_items([
        record(batch_id, 0, "completed"),
        record(batch_id, 1, "failed", "TIMEOUT"),
        record(batch_id, 2, "failed", "TIMEOUT"),
    ])
    assert store.finalize_batch(batch_id) == "partial"
    assert store.retry_failed(batch_id) == 2
    assert counts(store, batch_id) == {"pending": 2, "completed": 1}
    batch = store.get_batch(batch_id)
    assert batch["status"] == "pending" and batch["failures"] == {"TIMEOUT": 0}


def test_give_up_fails_every_unfinished_item_as_worker_lost(store: BatchStore):
    batch_id = new_batch(store, 4)
    store.claim(batch_id, "dead", range(2), 60)
    assert store.give_up(batch_id, resumes=3) == 4
    assert counts(store, batch_id) == {"failed": 4}
    assert store.get_batch(batch_id)["failures"] == {"WORKER_LOST": 4}
    item = store.items.find_one({"_id": item_id(batch_id, 0)})
    assert item["error"]["code"] == "WORKER_LOST" and "lease" not in item
