"""BatchStore reads that the API and the spider share, against the embedded server."""

from __future__ import annotations

from batchscraper.inputs import parse_batch
from batchscraper.store import BatchStore

FIELDS = [{"field": "name", "type": "string"}]


def test_items_are_read_by_id_lists_in_input_order(store: BatchStore) -> None:
    urls = [f"https://example.com/p/{n}" for n in range(25)]
    batch_id = store.create_batch(parse_batch(urls, FIELDS))["_id"]
    store.cancel_batch(batch_id, "test")  # every item: cancelled

    page = store.items_in_range(batch_id, 9, 13)
    assert [(doc["index"], doc["url"]) for doc in page] == [(n, urls[n]) for n in range(9, 13)]
    assert [doc["index"] for doc in store.items_by_index(batch_id, [20, 3, 11])] == [3, 11, 20]
    assert store.items_by_index(batch_id, [3, 11], status="pending") == []
    assert len(store.items_by_index(batch_id, [3, 11], status="cancelled")) == 2
    assert [doc["index"] for doc in store.iter_items(batch_id, start=20, page=3)] == list(
        range(20, 25)
    )
