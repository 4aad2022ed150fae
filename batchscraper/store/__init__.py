"""MongoDB persistence for batches and their items.

Invariant: a batch's ``counters`` change only together with an item's status
transition, and every transition names the old status as a precondition.
A replayed or duplicated write therefore matches nothing and counts nothing,
and ``counters`` always equals an aggregate over ``items``
(:meth:`BatchStore.aggregate_counters` recomputes it, for checks). One file
keeps it: :mod:`~batchscraper.store.transitions`, the item statuses, the table
of allowed moves and the only code that changes an item's status or a batch's
counters.

All methods are blocking pymongo calls: the Scrapy side calls them through
``asyncio.to_thread``.

:class:`BatchStore` is composed of one part per concern over a shared base:
:mod:`~batchscraper.store.base` (client, indexes, transactions, helpers),
:mod:`~batchscraper.store.transitions` (item statuses and their moves),
:mod:`~batchscraper.store.batches` (lifecycle), :mod:`~batchscraper.store.leases`,
:mod:`~batchscraper.store.results` (records, screenshots, domain health),
:mod:`~batchscraper.store.reads` and :mod:`~batchscraper.store.retention`.
"""

from __future__ import annotations

import atexit

from batchscraper.store.base import (
    COUNTER_KEYS,
    FINAL_BATCH_STATUSES,
    final_status,
    item_id,
    utcnow,
)
from batchscraper.store.batches import (
    INSERT_CHUNK,
    BatchLifecycle,
    duplicate_groups,
    new_batch_id,
)
from batchscraper.store.leases import ItemLeases
from batchscraper.store.mongo import connect, database_name, mongo_uri
from batchscraper.store.reads import BatchReads, ItemReads
from batchscraper.store.results import BREAKER_SEVERITY, ItemResults, merge_domain_health
from batchscraper.store.retention import BatchRetention
from batchscraper.store.transitions import (
    ITEM_STATUSES,
    ItemStatus,
    counters_for_transition,
    failed_record,
)

__all__ = [
    "BREAKER_SEVERITY",
    "COUNTER_KEYS",
    "FINAL_BATCH_STATUSES",
    "INSERT_CHUNK",
    "ITEM_STATUSES",
    "BatchStore",
    "ItemStatus",
    "counters_for_transition",
    "duplicate_groups",
    "failed_record",
    "final_status",
    "item_id",
    "merge_domain_health",
    "new_batch_id",
    "store_for",
    "utcnow",
]


class BatchStore(BatchLifecycle, ItemLeases, ItemResults, ItemReads, BatchReads,
                 BatchRetention):
    """Batches and items in one MongoDB database."""


_STORES: dict[str, BatchStore] = {}


def store_for(uri: str | None = None) -> BatchStore:
    """The process-wide store for ``uri`` (default: MONGO_URI or the embedded server)."""
    uri = uri or mongo_uri()
    if uri not in _STORES:
        store = BatchStore(connect(uri), database_name(uri))
        store.ensure_indexes()
        atexit.register(store.client.close)  # an unclosed client warns when collected at exit
        _STORES[uri] = store
    return _STORES[uri]
