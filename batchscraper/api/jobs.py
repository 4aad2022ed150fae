"""Scrapyd jobs of batches: schedule them, stop or unqueue them on cancel, stop them on shutdown.

Runs on the reactor thread. Jobs on this Scrapyd go through its own
scheduler, poller and launcher objects, as Scrapyd's ``schedule.json`` and
``cancel.json`` do; jobs on the other nodes of ``BATCH_API_NODES`` through
their JSON API (:mod:`batchscraper.api.nodes`). A batch's jobs are dealt
round-robin over the nodes that answer.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet import defer, error, reactor
from twisted.python.failure import Failure

from batchscraper.api.nodes import RemoteJobs, ScrapydNode
from batchscraper.exceptions import ServiceUnavailableError

if TYPE_CHECKING:  # importing scrapyd.website builds resources (deprecated ones, too)
    from scrapyd.launcher import ScrapyProcessProtocol
    from scrapyd.website import Root

logger = logging.getLogger(__name__)

SPIDER = "batch"  # the generic spider; it gets only `batch_id` (and Scrapyd's `_job`)
STOP_SIGNAL = "INT"  # Scrapy's graceful shutdown, as cancel.json sends
SHUTDOWN_SIGNAL = "TERM"  # the same for Scrapy; what Scrapyd itself was sent, usually


@dataclass(frozen=True)
class CancelledJobs:
    """What happened to a batch's jobs on cancel."""

    unqueued: int
    signalled: int


class ScrapydJobs:
    """The ``batch`` spider's jobs in one Scrapyd project, on this node and the others."""

    def __init__(
        self,
        root: Root,
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

    def schedule_ids(self, batch_id: str, job_ids: list[str]) -> None:
        """Queue the jobs ``job_ids`` (already noted on the batch) working ``batch_id``.

        Jobs on this node start now if a slot is free; a remote node that
        refuses a job (or does not answer) passes it on to the next node.
        Raises when this node's queue cannot take a job.
        """
        self.check_available()
        for node, job_id in zip(self._targets(len(job_ids)), job_ids, strict=True):
            if node is None:
                self._schedule_here(batch_id, job_id)
            else:
                defer.ensureDeferred(self._schedule_on(node, batch_id, job_id))
        logger.info("Scheduled %d job(s) for batch %s: %s", len(job_ids), batch_id, job_ids)

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


def new_job_ids(count: int) -> list[str]:
    """Ids for ``count`` new Scrapyd jobs (Scrapyd's own kind: uuid1, hex)."""
    return [uuid.uuid1().hex for _ in range(count)]


def _log_cancel_failure(failure: Failure, node: ScrapydNode) -> None:
    logger.warning("Cancelling a job on %s failed: %s", node.url, failure.value)


class CrawlShutdown(Service):
    """When Scrapyd shuts down, its crawls stop first: gracefully, or killed after ``grace``.

    Scrapyd alone exits on SIGTERM and leaves its crawl processes fetching.
    Here they get SIGTERM (Scrapy closes the spider with reason ``shutdown``:
    unfinished items go back to pending, so the reconciler resumes the batch
    on the next start); Scrapyd's shutdown waits for them, and sends SIGKILL
    to those still running after ``grace`` seconds. A SIGINT (Ctrl-C) has
    reached them already — a terminal sends it to the whole process group —
    and a second signal would make Scrapy abandon its graceful close, so
    then they are only waited for.
    """

    name = "batchscraper-crawl-shutdown"

    def __init__(self, root: Root, grace: float) -> None:
        self.root = root
        self.grace = grace

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        processes = list(self.root.launcher.processes.values())
        if not processes:
            return defer.succeed(None)
        interrupted = getattr(reactor, "_exitSignal", None) == signal.SIGINT
        logger.info("Shutdown: stopping %d crawl(s), at most %ss", len(processes), self.grace)
        for process in processes if not interrupted else []:
            _signal(process, SHUTDOWN_SIGNAL)
        clock: Any = reactor
        kill = clock.callLater(self.grace, _kill_remaining, processes)

        def all_ended(result: object) -> None:
            if kill.active():
                kill.cancel()

        ended = defer.DeferredList([_ended(p) for p in processes])
        return ended.addBoth(all_ended)


def _ended(process: ScrapyProcessProtocol) -> defer.Deferred[None]:
    """Fires when the crawl process has ended (after Scrapyd's own bookkeeping)."""
    ended: defer.Deferred[None] = defer.Deferred()

    def fire(result: object) -> object:
        ended.callback(None)
        return result

    process.deferred.addBoth(fire)
    return ended


def _kill_remaining(processes: list[ScrapyProcessProtocol]) -> None:
    for process in processes:
        if process.end_time is None:
            logger.warning("Shutdown: crawl %s (pid %s) did not stop in time; killed",
                           process.job, process.pid)
            _signal(process, "KILL")


def _signal(process: ScrapyProcessProtocol, name: str) -> None:
    with contextlib.suppress(error.ProcessExitedAlready):
        process.transport.signalProcess(name)
