"""The retention sweep in the Scrapyd process (see :mod:`batchscraper.store.retention`)."""

from __future__ import annotations

import logging
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task, threads

from batchscraper.store import BatchStore

logger = logging.getLogger(__name__)


class RetentionService(Service):
    """Every ``interval`` seconds: expired batches removed (with their screenshots), content
    past ``content_retention_days`` dropped."""

    name = "batchscraper-retention"

    def __init__(self, store: BatchStore, interval: float) -> None:
        self.store = store
        self.loop = task.LoopingCall(self.tick)
        self.interval = interval

    def startService(self) -> None:
        super().startService()
        self.loop.start(self.interval, now=True).addErrback(
            lambda failure: logger.error("Retention sweep stopped: %s", failure.getTraceback())
        )

    def stopService(self) -> None:
        super().stopService()
        if self.loop.running:
            self.loop.stop()

    def tick(self) -> defer.Deferred[Any]:
        """One sweep; a failure (MongoDB away) is logged and the next sweep runs as usual."""
        d = threads.deferToThread(self.store.sweep_expired)
        d.addCallback(self._log)
        d.addErrback(lambda failure: logger.warning("Retention sweep failed: %s", failure.value))
        return d

    @staticmethod
    def _log(removed: dict[str, int]) -> None:
        if any(removed.values()):
            logger.info("Retention: removed %(batches)d expired batch(es), dropped the content "
                        "of %(content_dropped)d item(s), deleted %(screenshots)d orphan "
                        "screenshot(s)", removed)
