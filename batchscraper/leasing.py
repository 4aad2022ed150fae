"""How one worker takes its share of a batch: leases, their renewal, and giving them back.

The spider never holds the batch's URL list. :meth:`Leaser.items` leases small
chunks of pending items (then items whose worker died, once their leases
expire) and waits for room before leasing more; :meth:`Leaser.housekeeping`
renews this worker's leases and notices a cancel request; at the end
:meth:`Leaser.release_unfinished` gives back what this worker did not finish.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from scrapy.settings import BaseSettings

from batchscraper.jsontypes import Document
from batchscraper.run import BatchRun
from batchscraper.store import item_id
from batchscraper.store.base import record_index

ROOM_POLL_SECONDS = 0.05
PEER_POLL_SECONDS = 1.0  # at the end, how often to look at items other workers still hold


@dataclass(frozen=True)
class WorkerConfig:
    """How this process leases and works items (from ``BATCH_*`` settings)."""

    claim_chunk: int
    lease_seconds: float
    cancel_check_interval: float
    flush_items: int
    flush_seconds: float

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> WorkerConfig:
        return cls(
            claim_chunk=settings.getint("BATCH_CLAIM_CHUNK"),
            lease_seconds=settings.getfloat("BATCH_LEASE_SECONDS"),
            cancel_check_interval=settings.getfloat("BATCH_CANCEL_CHECK_INTERVAL"),
            flush_items=settings.getint("BATCH_STORE_FLUSH_ITEMS"),
            flush_seconds=settings.getfloat("BATCH_STORE_FLUSH_SECONDS"),
        )


class Leaser:
    """This worker's leases on the items of ``run``'s batch; ``stopped`` ends the leasing."""

    def __init__(self, run: BatchRun, config: WorkerConfig, stopped: Callable[[], bool]) -> None:
        self.run = run
        self.config = config
        self.stopped = stopped

    async def items(self) -> AsyncIterator[Document]:
        """Leased item documents, chunk by chunk, until the batch has no work left."""
        run, config = self.run, self.config
        total = run.batch["counters"]["total"]
        cursor = 0
        while not self.stopped():
            if cursor < total:
                indexes = range(cursor, min(cursor + config.claim_chunk, total))
                cursor = indexes.stop
                docs = await run.writer.run(
                    run.store.claim, run.batch_id, run.worker_id, indexes, config.lease_seconds
                )
            else:
                docs = await run.writer.run(
                    run.store.reclaim_expired, run.batch_id, run.worker_id,
                    config.claim_chunk, config.lease_seconds,
                )
                if not docs:
                    wait = await asyncio.to_thread(
                        run.store.lease_wait, run.batch_id, run.worker_id
                    )
                    if wait is None:
                        return
                    if wait == 0:
                        cursor = 0  # items went back to pending (released or retried)
                    else:  # other workers' items: they finish, or their leases expire
                        await asyncio.sleep(min(wait, PEER_POLL_SECONDS))
                    continue
            for doc in docs:
                run.inflight[record_index(doc)] = doc
                yield doc
            await self._wait_for_room()

    async def _wait_for_room(self) -> None:
        """Hold the next claim while this process has enough work in hand."""
        limit = self.run.options.concurrency + self.config.claim_chunk
        while not self.stopped() and len(self.run.inflight) >= limit:
            await asyncio.sleep(ROOM_POLL_SECONDS)

    async def housekeeping(self) -> None:
        """Renew this worker's leases, and stop the crawl when the batch is cancelled."""
        run = self.run
        renew_every = self.config.lease_seconds / 3
        last_renew = time.monotonic()
        while not self.stopped():
            await asyncio.sleep(self.config.cancel_check_interval)
            if await asyncio.to_thread(run.store.cancel_requested, run.batch_id):
                run.stop("cancelled")
                return
            if time.monotonic() - last_renew >= renew_every:
                await run.writer.run(
                    run.store.renew_leases, run.worker_id, self._leased_ids(),
                    self.config.lease_seconds,
                )
                last_renew = time.monotonic()

    def release_unfinished(self) -> int:
        """running -> pending for the items this worker holds (blocking: at spider close)."""
        run = self.run
        return run.store.release(run.batch_id, run.worker_id, self._leased_ids())

    def _leased_ids(self) -> list[str]:
        return [item_id(self.run.batch_id, index) for index in self.run.inflight]
