"""One process's writes to MongoDB: serialized on one thread, item records grouped.

Concurrent transactions that all move the same batch document's counters
conflict with each other; on the embedded server enough of them at once
retried into a livelock. So every write of a spider process — claims, lease
renewals, releases and item records — runs on a single thread, and item
records are grouped into one transaction per flush (``BATCH_STORE_FLUSH_*``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from batchscraper.store import BatchStore

T = TypeVar("T")


class SerialWriter:
    """Runs store writes one at a time, off the reactor thread."""

    def __init__(self, store: BatchStore, flush_items: int, flush_seconds: float) -> None:
        self.store = store
        self.flush_items = flush_items
        self.flush_seconds = flush_seconds
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-writes")
        self._pending: list[tuple[dict[str, Any], asyncio.Future[bool]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._writing: set[asyncio.Future[None]] = set()  # keeps running flushes referenced

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on the write thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(function, *args))

    async def finish(self, record: dict[str, Any]) -> bool:
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
        group, self._pending = self._pending, []
        if group:
            task = asyncio.ensure_future(self._write(group))
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)

    async def _write(self, group: list[tuple[dict[str, Any], asyncio.Future[bool]]]) -> None:
        try:
            applied = await self.run(self.store.finish_items, [record for record, _ in group])
        except Exception as exc:  # every waiting item sees the failure
            for _, future in group:
                future.set_exception(exc)
            return
        for (_, future), ok in zip(group, applied, strict=True):
            future.set_result(ok)

    def close(self) -> None:
        """Wait for queued writes to finish (at spider close)."""
        self._executor.shutdown(wait=True)
