"""The retention sweep in the Scrapyd process (see :mod:`batchscraper.store.retention`)."""

from __future__ import annotations

import logging

from twisted.internet import threads

from batchscraper.api.periodic import PeriodicService
from batchscraper.store import BatchStore

logger = logging.getLogger(__name__)


class RetentionService(PeriodicService):
    """Every ``interval`` seconds: expired batches removed (with their screenshots), content
    past ``content_retention_days`` dropped."""

    name = "batchscraper-retention"
    what = "Retention sweep"

    def __init__(self, store: BatchStore, interval: float) -> None:
        super().__init__(interval)
        self.store = store

    async def scan(self) -> None:
        removed: dict[str, int] = await threads.deferToThread(self.store.sweep_expired)
        if any(removed.values()):
            logger.info("Retention: removed %(batches)d expired batch(es), dropped the content "
                        "of %(content_dropped)d item(s), deleted %(screenshots)d orphan "
                        "screenshot(s)", removed)
