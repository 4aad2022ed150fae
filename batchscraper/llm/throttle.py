"""How many LLM requests are in flight: AIMD, like AutoThrottle for the LLM endpoint.

The limit starts at ``BATCH_LLM_CONCURRENCY``. A sign that the endpoint is
saturated (a timeout, HTTP 429 or 503) halves it, once per round: only a
request sent after the last cut can cut again (the ones already in flight
report the same congestion); an answer no slower than twice the recent
fastest one adds ``1 / limit`` (one more slot per round of answers), up to
``BATCH_LLM_MAX_CONCURRENCY``. A request waits for its slot here, outside its
timeout.

A server may answer the requests it holds one at a time (llama.cpp with one
slot, Ollama by default): a request sent while ``n`` others are in flight may
wait for all of them at the server. :meth:`LLMThrottle.slot` tells the caller
``n``, and the caller allows ``n + 1`` answer times for that request, so time
queued at the server does not burn the timeout of one answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

#: an answer this much slower than the recent fastest does not grow the limit
SLOW_FACTOR = 2.0
#: the recent fastest answer forgets this share of its lead per answer
FORGET = 0.05


@dataclass(frozen=True)
class Slot:
    """One request's place: how many others were in flight when it got it, and when."""

    ahead: int
    started: float


class LLMThrottle:
    """An adaptive limit on the LLM requests in flight of one process."""

    def __init__(self, start: int, maximum: int,
                 on_change: Callable[[int, int], None] | None = None) -> None:
        self.maximum = max(1, maximum)
        self.limit = float(min(max(1, start), self.maximum))
        self.in_flight = 0
        self.waiting = 0
        self._on_change = on_change  # told (in_flight, waiting) whenever either changes
        self.fastest: float | None = None  # the recent fastest answer, in seconds
        self.last_cut = float("-inf")
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        """Wait until fewer than ``limit`` requests are in flight; hold a place meanwhile."""
        async with self._changed:
            self._count(waiting=1)
            try:
                await self._changed.wait_for(lambda: self.in_flight < int(self.limit))
            finally:
                self._count(waiting=-1)
            slot = Slot(ahead=self.in_flight, started=time.monotonic())
            self._count(in_flight=1)
        try:
            yield slot
        finally:
            self._count(in_flight=-1)  # at once, also when cancelled while the lock is busy
            async with self._changed:
                self._changed.notify_all()

    def _count(self, in_flight: int = 0, waiting: int = 0) -> None:
        self.in_flight += in_flight
        self.waiting += waiting
        if self._on_change is not None:
            self._on_change(self.in_flight, self.waiting)

    def answered(self, slot: Slot) -> None:
        """The request of ``slot`` got its answer: a fast one grows the limit."""
        seconds = time.monotonic() - slot.started
        if self.fastest is None or seconds < self.fastest:
            self.fastest = seconds
        else:
            self.fastest += (seconds - self.fastest) * FORGET
        if seconds <= self.fastest * SLOW_FACTOR + 0.05:
            self.limit = min(self.maximum, self.limit + 1.0 / self.limit)

    def congested(self, slot: Slot) -> bool:
        """The request of ``slot`` met a saturated endpoint: halve the limit, once per round.

        Returns whether the limit was cut.
        """
        if slot.started < self.last_cut:
            return False
        self.limit = max(1.0, self.limit / 2)
        self.last_cut = time.monotonic()
        return True
