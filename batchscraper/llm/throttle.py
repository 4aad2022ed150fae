"""How many LLM requests are in flight: AIMD, like AutoThrottle for the LLM endpoint.

The limit starts at ``BATCH_LLM_CONCURRENCY``. A sign that the endpoint is
saturated (a timeout, HTTP 429 or 503) halves it, at most once per
``latency`` (the requests already in flight when it was cut would report the
same congestion again); an answer that came back no slower than twice the
fastest one seen adds ``1 / limit`` (one more slot per round of answers), up
to ``BATCH_LLM_MAX_CONCURRENCY``. A request waits for its slot here, outside
its timeout.

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

#: an answer this much slower than the fastest seen does not grow the limit
SLOW_FACTOR = 2.0


@dataclass(frozen=True)
class Slot:
    """One request's place: how many others were in flight when it got it."""

    ahead: int


class LLMThrottle:
    """An adaptive limit on the LLM requests in flight of one process."""

    def __init__(self, start: int, maximum: int,
                 on_change: Callable[[int, int], None] | None = None) -> None:
        self.maximum = max(1, maximum)
        self.limit = float(min(max(1, start), self.maximum))
        self.in_flight = 0
        self.waiting = 0
        self._on_change = on_change  # told (in_flight, waiting) whenever either changes
        self.fastest: float | None = None
        self._cut_at = 0.0
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
            slot = Slot(ahead=self.in_flight)
            self._count(in_flight=1)
        try:
            yield slot
        finally:
            async with self._changed:
                self._count(in_flight=-1)
                self._changed.notify_all()

    def _count(self, in_flight: int = 0, waiting: int = 0) -> None:
        self.in_flight += in_flight
        self.waiting += waiting
        if self._on_change is not None:
            self._on_change(self.in_flight, self.waiting)

    def answered(self, seconds: float) -> None:
        """An answer arrived after ``seconds``: a fast one grows the limit."""
        if self.fastest is None or seconds < self.fastest:
            self.fastest = seconds
        if seconds <= self.fastest * SLOW_FACTOR + 0.05:
            self.limit = min(self.maximum, self.limit + 1.0 / self.limit)

    def congested(self) -> bool:
        """The endpoint is saturated: halve the limit (once per round); return whether it was cut."""
        now = time.monotonic()
        if now < self._cut_at:
            return False
        self.limit = max(1.0, self.limit / 2)
        self._cut_at = now + (self.fastest or 1.0)
        return True
