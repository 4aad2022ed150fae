"""Store writes: retried while MongoDB is unreachable; a record MongoDB refuses fails alone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo.errors import AutoReconnect, DuplicateKeyError

from batchscraper.inputs import parse_batch
from batchscraper.store import BatchStore
from batchscraper.store.writes import SerialWriter, with_retries
from tests.faults.conftest import PRODUCT_SCHEMA, assert_exact


class Flaky:
    """Fails with ``error`` the first ``failures`` calls, then answers."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self, value: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return value


def test_unreachable_mongodb_is_retried_a_bounded_number_of_times() -> None:
    flaky = Flaky(2, AutoReconnect("connection reset"))
    assert with_retries(flaky, 3, 0.001)("ok") == "ok"
    assert flaky.calls == 3
    hopeless = Flaky(10, AutoReconnect("down"))
    with pytest.raises(AutoReconnect):
        with_retries(hopeless, 3, 0.001)("x")
    assert hopeless.calls == 4


def test_other_errors_are_not_retried() -> None:
    refused = Flaky(1, DuplicateKeyError("E11000"))
    with pytest.raises(DuplicateKeyError):
        with_retries(refused, 3, 0.001)("x")
    assert refused.calls == 1


@pytest.mark.parametrize("flush_items", [3, 1], ids=["grouped", "alone"])
def test_a_record_mongodb_refuses_fails_alone(store: BatchStore, flush_items: int) -> None:
    urls = [f"https://example.com/{n}" for n in range(3)]
    batch_id = store.create_batch(parse_batch(urls, PRODUCT_SCHEMA))["_id"]
    assert len(store.claim(batch_id, "writer-test", range(3), 60)) == 3
    records = [
        {"batch_id": batch_id, "index": n, "url": url, "status": "completed", "attempts": 1,
         "data": {"name": f"P{n}", "sku": f"S{n}"}}
        for n, url in enumerate(urls)
    ]
    records[1]["data"]["name"] = "x" * (17 * 1024 * 1024)  # over MongoDB's 16 MiB

    async def write_all() -> list[bool]:
        writer = SerialWriter(store, flush_items=flush_items, flush_seconds=10, retries=2)
        try:
            return list(await asyncio.gather(*(writer.finish(r) for r in records)))
        finally:
            writer.close()

    assert asyncio.run(write_all()) == [True, True, True]
    items = list(store.iter_items(batch_id))
    assert [item["status"] for item in items] == ["completed", "failed", "completed"]
    assert items[1]["error"]["code"] == "STORE_FAILED"
    assert items[1]["error"]["retryable"] is False
    assert items[1]["data"] is None
    assert items[2]["data"] == {"name": "P2", "sku": "S2"}
    batch = assert_exact(store, batch_id, 3)
    assert batch["counters"]["failed"] == 1
