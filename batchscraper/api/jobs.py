"""Scrapyd jobs of batches: schedule them, and stop or unqueue them on cancel.

Runs on the reactor thread: it uses Scrapyd's own scheduler, poller and
launcher objects, as Scrapyd's ``schedule.json`` and ``cancel.json`` do.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from batchscraper.exceptions import ServiceUnavailableError

logger = logging.getLogger(__name__)

SPIDER = "batch"  # the generic spider; it gets only `batch_id` (and Scrapyd's `_job`)
STOP_SIGNAL = "INT"  # Scrapy's graceful shutdown, as cancel.json sends


@dataclass(frozen=True)
class CancelledJobs:
    """What happened to a batch's jobs on cancel."""

    unqueued: int
    signalled: int


class ScrapydJobs:
    """The ``batch`` spider's jobs in one Scrapyd project."""

    def __init__(self, root: Any, project: str, settings: dict[str, str]) -> None:
        self.root = root
        self.project = project
        self.settings = settings  # -s NAME=VALUE for every job

    def check_available(self) -> None:
        """503 when Scrapyd does not know the project (so nothing gets stored for it)."""
        if self.project not in self.root.poller.queues:
            raise ServiceUnavailableError(
                f"Scrapyd has no project {self.project!r}: run Scrapyd from the project "
                "directory (scrapy.cfg) or deploy it with scrapyd-deploy"
            )

    def schedule(self, batch_id: str, count: int = 1) -> list[str]:
        """Queue ``count`` jobs working ``batch_id``; start them now if a slot is free."""
        self.check_available()
        job_ids = []
        for _ in range(count):
            job_id = uuid.uuid1().hex
            self.root.scheduler.schedule(
                self.project, SPIDER, settings=self.settings, batch_id=batch_id, _job=job_id
            )
            job_ids.append(job_id)
        self.root.poller.poll().addErrback(
            lambda failure: logger.warning("Scrapyd poll failed: %s", failure.value)
        )
        logger.info("Scheduled %d job(s) for batch %s: %s", count, batch_id, job_ids)
        return job_ids

    def cancel(self, job_ids: list[str]) -> CancelledJobs:
        """Remove the jobs still queued and send the running ones Scrapy's stop signal."""
        wanted = set(job_ids)
        unqueued = 0
        queue = self.root.poller.queues.get(self.project)
        if queue is not None and wanted:
            unqueued = queue.remove(lambda message: message.get("_job") in wanted)
        signalled = 0
        for process in list(self.root.launcher.processes.values()):
            if process.project == self.project and process.job in wanted:
                process.transport.signalProcess(STOP_SIGNAL)
                signalled += 1
        return CancelledJobs(unqueued=unqueued, signalled=signalled)

    def active(self, job_ids: list[str]) -> list[str]:
        """Which of ``job_ids`` are queued or running."""
        wanted = set(job_ids)
        queue = self.root.poller.queues.get(self.project)
        queued = {m.get("_job") for m in queue.list()} if queue is not None else set()
        running = {
            p.job for p in self.root.launcher.processes.values() if p.project == self.project
        }
        return sorted(wanted & (queued | running))
