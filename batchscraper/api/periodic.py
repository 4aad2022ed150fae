"""The Scrapyd process's periodic work: one base for the services that scan every N seconds.

The reconciler, the scheduler, webhook delivery, the retention sweep and the
remote-node poll each run :meth:`PeriodicService.scan` on a ``LoopingCall``
started and stopped with Scrapyd's application. A scan that fails (MongoDB
away, a node not answering) is logged and the next one runs as usual; only a
bug in the loop itself stops it, and that is logged as an error.
"""

from __future__ import annotations

import logging

from twisted.application.service import Service
from twisted.internet import defer, task

logger = logging.getLogger(__name__)


class PeriodicService(Service):
    """Runs :meth:`scan` every ``interval`` seconds while the service runs."""

    #: how the log names one scan, e.g. "Reconciler scan"
    what = "Scan"
    #: whether the first scan runs as the service starts (else one interval later)
    scan_at_start = True

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.loop = task.LoopingCall(self.tick)

    def startService(self) -> None:
        super().startService()
        self.loop.start(self.interval, now=self.scan_at_start).addErrback(
            lambda failure: logger.error("%s stopped: %s", self.what, failure.getTraceback())
        )

    def stopService(self) -> None:
        super().stopService()
        if self.loop.running:
            self.loop.stop()

    def tick(self) -> defer.Deferred[None]:
        """One scan; its failure is logged and the loop goes on."""
        d = defer.ensureDeferred(self.scan())
        d.addErrback(lambda failure: logger.warning("%s failed: %s", self.what, failure.value))
        return d

    async def scan(self) -> None:
        raise NotImplementedError
