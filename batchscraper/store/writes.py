"""One process's writes to MongoDB: serialized on one thread, item records grouped.

Concurrent transactions that all move the same batch document's counters
conflict with each other; on the embedded server enough of them at once
retried into a livelock. So every write of a spider process — claims, lease
renewals, releases and item records — runs on a single thread, and item
records are grouped into one transaction per flush (``BATCH_STORE_FLUSH_*``):
at most ``BATCH_STORE_FLUSH_ITEMS`` records, written ``BATCH_STORE_FLUSH_SECONDS``
after the first of them arrived or as soon as there are that many. One group
is written at a time: records that arrive while a group is being written wait
for it and go together in the next, so a fast crawl writes bigger groups, not
more transactions queued behind each other.

Writes that fail because MongoDB is unreachable (restarting, failing over)
are retried ``BATCH_STORE_RETRIES`` times with a doubling wait; every store
write names the old state as a precondition, so a replayed write that had
in fact been applied changes nothing. A group of records that MongoDB
refuses for another reason is written record by record, so one bad record
fails alone: it is stored as failed with ``STORE_FAILED`` instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import ParamSpec, TypeVar

from pymongo.errors import ConnectionFailure, PyMongoError

from batchscraper.exceptions import StoreFailedError
from batchscraper.jsontypes import Document
from batchscraper.store import BatchStore, failed_record

logger = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")
TRANSIENT_LABELS = ("TransientTransactionError", "RetryableWriteError")
STORE_FAILED_MESSAGE_CHARS = 300


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` means MongoDB was unreachable for a while (worth retrying)."""
    if isinstance(exc, ConnectionFailure):
        return True
    return isinstance(exc, PyMongoError) and any(map(exc.has_error_label, TRANSIENT_LABELS))


def with_retries(function: Callable[P, T], retries: int, backoff: float) -> Callable[P, T]:
    """``function`` retried on transient MongoDB errors, waiting ``backoff`` s, doubled."""

    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in range(retries + 1):
            try:
                return function(*args, **kwargs)
            except PyMongoError as exc:
                if attempt == retries or not is_transient(exc):
                    raise
                delay = backoff * 2**attempt
                logger.warning("MongoDB unreachable (%s); retry %d/%d of %s in %.1fs",
                               type(exc).__name__, attempt + 1, retries,
                               getattr(function, "__name__", "a write"), delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    return call


class SerialWriter:
    """Runs store writes one at a time, off the reactor thread."""

    def __init__(
        self,
        store: BatchStore,
        flush_items: int,
        flush_seconds: float,
        retries: int = 0,
        retry_backoff: float = 0.5,
    ) -> None:
        self.store = store
        self.flush_items = flush_items
        self.flush_seconds = flush_seconds
        self.retries = retries
        self.retry_backoff = retry_backoff
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-writes")
        self._pending: list[tuple[Document, asyncio.Future[bool]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Future[None] | None = None  # the group being written
        self._due = False  # the pending records' time came while a group was being written

    async def run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``function(*args)`` on the write thread, retried while MongoDB is unreachable."""
        loop = asyncio.get_running_loop()
        call = with_retries(function, self.retries, self.retry_backoff)
        return await loop.run_in_executor(self._executor, partial(call, *args, **kwargs))

    async def finish(self, record: Document) -> bool:
        """Write an item's final record (grouped with others); whether it was applied."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._pending.append((record, future))
        if len(self._pending) >= self.flush_items:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.flush_seconds, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writing is not None:  # they go when the group being written is done
            self._due = True
            return
        group = self._pending[: self.flush_items]
        del self._pending[: len(group)]
        if group:
            self._due = False
            self._writing = asyncio.ensure_future(self._write(group))
            self._writing.add_done_callback(self._written)

    def _written(self, _: asyncio.Future[None]) -> None:
        self._writing = None
        if not self._pending:
            return
        if self._due or len(self._pending) >= self.flush_items:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_seconds, self._flush)

    async def _write(self, group: list[tuple[Document, asyncio.Future[bool]]]) -> None:
        records = [record for record, _ in group]
        try:
            applied = await self.run(self.store.finish_items, records)
        except Exception as exc:
            if not is_transient(exc):  # find the record MongoDB refuses
                for one in group:
                    await self._write_alone(*one)
                return
            for _, future in group:  # every waiting item sees the failure
                future.set_exception(exc)
            return
        for (_, future), ok in zip(group, applied, strict=True):
            future.set_result(ok)

    async def _write_alone(self, record: Document, future: asyncio.Future[bool]) -> None:
        """One record; if MongoDB refuses it, a failed record with ``STORE_FAILED`` instead."""
        try:
            (ok,) = await self.run(self.store.finish_items, [record])
        except Exception as exc:
            if is_transient(exc):
                future.set_exception(exc)
                return
            logger.error("MongoDB refused the record of item %s: %s", record.get("index"), exc)
            message = f"{type(exc).__name__}: {exc}"[:STORE_FAILED_MESSAGE_CHARS]
            failed = failed_record(record, StoreFailedError(message).to_dict())
            try:
                (ok,) = await self.run(self.store.finish_items, [failed])
            except Exception as second:
                future.set_exception(second)
                return
        future.set_result(ok)

    def close(self) -> None:
        """Wait for queued writes to finish (at spider close)."""
        self._executor.shutdown(wait=True)
