"""The reconciler: no batch submitted through the API stays pending or running forever.

A batch's jobs can vanish without finishing it: the crawl process is killed,
Scrapyd is restarted while it runs, a machine goes away. The items such a
job held keep their leases until ``BATCH_LEASE_SECONDS`` runs out; nothing
else would ever pick the batch up again. So, inside the Scrapyd process (a
Twisted service, like webhook delivery), every ``BATCH_RECONCILE_INTERVAL``
seconds the reconciler looks at the API's batches that are ``pending`` or
``running``. A batch is *abandoned* when none of its jobs is queued or
running (on this node, or on the nodes of ``BATCH_API_NODES`` as last
polled) and none of its items holds a live lease. Once a batch has looked
abandoned for ``BATCH_RECONCILE_GRACE`` seconds:

- if no item is pending, leased or running (the worker died after its last record),
  the batch is given its final status (and its webhook event);
- otherwise a resume job is scheduled (recorded in the batch's ``jobs`` with
  kind ``reconcile``), at most ``BATCH_RECONCILE_MAX_RESUMES`` times;
- after that, its unfinished items fail with ``WORKER_LOST`` and the batch is
  finalized, so a page that kills every worker cannot keep a batch alive.

Several Scrapyd nodes may each run one: a duplicate resume job is harmless
(leases keep workers apart).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from scrapy.settings import BaseSettings
from twisted.internet import reactor, threads

from batchscraper.api.jobs import ScrapydJobs, new_job_ids
from batchscraper.api.periodic import PeriodicService
from batchscraper.jsontypes import Document
from batchscraper.store import BatchStore, final_status, utcnow
from batchscraper.store.base import document_id

logger = logging.getLogger(__name__)

UNFINISHED_BATCH = ("pending", "running")  # batch statuses

RESUME_KIND = "reconcile"


@dataclass(frozen=True)
class ReconcileConfig:
    """The ``BATCH_RECONCILE_*`` settings."""

    enabled: bool
    interval: float
    grace: float
    max_resumes: int

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> ReconcileConfig:
        return cls(
            enabled=settings.getbool("BATCH_RECONCILE_ENABLED"),
            interval=settings.getfloat("BATCH_RECONCILE_INTERVAL"),
            grace=settings.getfloat("BATCH_RECONCILE_GRACE"),
            max_resumes=settings.getint("BATCH_RECONCILE_MAX_RESUMES"),
        )


class BatchReconciler:
    """What the reconciler reads and writes in MongoDB (blocking: call it from a thread)."""

    def __init__(self, store: BatchStore) -> None:
        self.store = store

    def leaseless(self) -> list[Document]:
        """The API's unfinished batches none of whose items holds a live lease."""
        now = utcnow()
        batches = self.store.unfinished_api_batches(UNFINISHED_BATCH,
                                                    ("_id", "status", "jobs", "counters"))
        return [batch for batch in batches
                if not self.store.holds_live_lease(document_id(batch), now)]

    def give_up(self, batch_id: str, resumes: int) -> str | None:
        """Fail every unfinished item with ``WORKER_LOST``; finalize the batch."""
        self.store.give_up(batch_id, resumes)
        return self.store.finalize_batch(batch_id)


def resumes_of(batch: Document) -> int:
    """How many resume jobs the reconciler already gave the batch."""
    jobs = cast("list[Document]", batch.get("jobs") or [])
    return sum(1 for job in jobs if job.get("kind") == RESUME_KIND)


class ReconcileService(PeriodicService):
    """Looks for abandoned batches every ``interval`` seconds and resumes or finalizes them.

    ``jobs`` is the API's :class:`~batchscraper.api.jobs.ScrapydJobs` (reactor
    thread); ``record_jobs(batch_id, job_ids, kind)`` notes new jobs on the batch
    (blocking). A resume job is noted first and queued then, as submit and retry do.
    """

    name = "batchscraper-reconciler"
    what = "Reconciler scan"
    scan_at_start = False

    def __init__(
        self,
        reconciler: BatchReconciler,
        jobs: ScrapydJobs,
        record_jobs: Callable[[str, list[str], str], None],
        config: ReconcileConfig,
    ) -> None:
        super().__init__(config.interval)
        self.reconciler = reconciler
        self.jobs = jobs
        self.record_jobs = record_jobs
        self.config = config
        self.suspects: dict[str, float] = {}  # batch id -> when it first looked abandoned

    async def scan(self) -> None:
        if getattr(reactor, "_stopped", False):  # shutting down: the crawls are being stopped
            return
        batches = await threads.deferToThread(self.reconciler.leaseless)
        now = time.monotonic()
        abandoned = {
            document_id(batch): batch for batch in batches
            if not self.jobs.active(
                [cast(str, job["id"]) for job in cast("list[Document]", batch.get("jobs") or [])]
            )
        }
        self.suspects = {bid: self.suspects.get(bid, now) for bid in abandoned}
        for batch_id, since in list(self.suspects.items()):
            if now - since >= self.config.grace:
                del self.suspects[batch_id]
                await self.reconcile(abandoned[batch_id])

    async def reconcile(self, batch: Document) -> None:
        """Finalize, resume or give up on one abandoned batch."""
        batch_id = document_id(batch)
        counters = cast("dict[str, int]", batch["counters"])
        resumes = resumes_of(batch)
        if final_status(counters) is not None:  # no item pending, leased or running
            status = await threads.deferToThread(self.reconciler.store.finalize_batch, batch_id)
            logger.info("Reconciler: batch %s had no unfinished item; now %s", batch_id, status)
        elif resumes < self.config.max_resumes:
            self.jobs.check_available()  # nothing noted on the batch for a job with nowhere to go
            job_ids = new_job_ids(1)
            await threads.deferToThread(self.record_jobs, batch_id, job_ids, RESUME_KIND)
            self.jobs.schedule_ids(batch_id, job_ids)
            logger.warning(
                "Reconciler: batch %s (%s) had no live job or lease; resume job %s (%d of %d)",
                batch_id, batch["status"], job_ids[0], resumes + 1, self.config.max_resumes,
            )
        else:
            status = await threads.deferToThread(self.reconciler.give_up, batch_id, resumes)
            logger.error("Reconciler: batch %s lost its workers %d times; unfinished items "
                         "failed with WORKER_LOST, batch %s", batch_id, resumes + 1, status)
