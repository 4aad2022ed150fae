"""Scrapyd jobs of batches: schedule them, and stop or unqueue them on cancel.

Runs on the reactor thread. Jobs on this Scrapyd go through its own
scheduler, poller and launcher objects, as Scrapyd's ``schedule.json`` and
``cancel.json`` do; jobs on the other nodes of ``BATCH_API_NODES`` through
their JSON API (:mod:`batchscraper.api.nodes`). A batch's jobs are dealt
round-robin over the nodes that answer.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from batchscraper.api.nodes import RemoteJobs, ScrapydNode
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
    """The ``batch`` spider's jobs in one Scrapyd project, on this node and the others."""

    def __init__(
        self,
        root: Any,
        project: str,
        settings: dict[str, str],
        nodes: list[ScrapydNode | None] | None = None,
        remote: RemoteJobs | None = None,
    ) -> None:
        self.root = root
        self.project = project
        self.settings = settings  # -s NAME=VALUE for every job
        self.nodes = nodes or [None]  # None: this Scrapyd
        self.remote = remote
        self._turn = 0  # where the next batch's first job goes

    def check_available(self) -> None:
        """503 when no node can take a job (so nothing gets stored for it)."""
        if None in self.nodes and self.project in self.root.poller.queues:
            return
        if self.remote is not None and any(self.remote.answering.values()):
            return
        raise ServiceUnavailableError(
            f"Scrapyd has no project {self.project!r}: run Scrapyd from the project "
            "directory (scrapy.cfg) or deploy it with scrapyd-deploy"
            if self.nodes == [None]
            else "no Scrapyd node of BATCH_API_NODES answers"
        )

    def schedule(self, batch_id: str, count: int = 1) -> list[str]:
        """Queue ``count`` jobs working ``batch_id``, spread over the nodes; their ids.

        Jobs on this node start now if a slot is free; a remote node that
        refuses a job (or does not answer) passes it on to the next node.
        """
        self.check_available()
        job_ids = []
        for node in self._targets(count):
            job_id = uuid.uuid1().hex
            if node is None:
                self._schedule_here(batch_id, job_id)
            else:
                defer.ensureDeferred(self._schedule_on(node, batch_id, job_id))
            job_ids.append(job_id)
        logger.info("Scheduled %d job(s) for batch %s: %s", count, batch_id, job_ids)
        return job_ids

    def _targets(self, count: int) -> list[ScrapydNode | None]:
        answering = self.remote.answering if self.remote is not None else {}
        live = [n for n in self.nodes if n is None or answering.get(n.url, True)] or self.nodes
        first, self._turn = self._turn, self._turn + count
        return [live[(first + i) % len(live)] for i in range(count)]

    def _schedule_here(self, batch_id: str, job_id: str) -> None:
        self.root.scheduler.schedule(
            self.project, SPIDER, settings=self.settings, batch_id=batch_id, _job=job_id
        )
        self.root.poller.poll().addErrback(
            lambda failure: logger.warning("Scrapyd poll failed: %s", failure.value)
        )

    async def _schedule_on(self, node: ScrapydNode, batch_id: str, job_id: str) -> None:
        """Schedule on ``node``, else on the other nodes in turn."""
        for target in [node, *(n for n in self.nodes if n != node)]:
            try:
                if target is None:
                    self._schedule_here(batch_id, job_id)
                    where = "this node"
                else:
                    assert self.remote is not None
                    await self.remote.schedule(
                        target, SPIDER, job_id, self.settings, batch_id=batch_id
                    )
                    where = target.url
            except Exception as exc:  # the next node gets the job
                name = target.url if target is not None else "this node"
                logger.warning("Job %s of batch %s not taken by %s: %s", job_id, batch_id,
                               name, exc)
                continue
            logger.info("Job %s of batch %s scheduled on %s", job_id, batch_id, where)
            return
        logger.error("No Scrapyd node took job %s of batch %s", job_id, batch_id)

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
        if self.remote is not None:  # remote jobs also stop on the batch's cancel flag
            for node in self.remote.nodes:
                for job_id in wanted & self.remote.active[node.url]:
                    defer.ensureDeferred(self.remote.cancel(node, job_id)).addErrback(
                        _log_cancel_failure, node
                    )
                    signalled += 1
        return CancelledJobs(unqueued=unqueued, signalled=signalled)

    def active(self, job_ids: list[str]) -> list[str]:
        """Which of ``job_ids`` are queued or running (remote nodes: as of their last poll)."""
        wanted = set(job_ids)
        queue = self.root.poller.queues.get(self.project)
        queued = {m.get("_job") for m in queue.list()} if queue is not None else set()
        running = {
            p.job for p in self.root.launcher.processes.values() if p.project == self.project
        }
        remote = self.remote.active_jobs() if self.remote is not None else set()
        return sorted(wanted & (queued | running | remote))


def _log_cancel_failure(failure: Failure, node: ScrapydNode) -> None:
    logger.warning("Cancelling a job on %s failed: %s", node.url, failure.value)
