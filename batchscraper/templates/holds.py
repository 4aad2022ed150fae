"""Pages held back while their template is learned: they wait for its outcome, not the LLM.

While a template learns or verifies, the pages its learning needs hold claims and
go to the LLM (:meth:`TemplateStore.claim`); the shape's other pages wait here
until the template changes (``rev``), then match again: an active template
serves them, a refuted or abandoned one sends them on. A change this process
makes wakes its waiters at once; one waiter per template (the watcher) reads
the template's ``rev`` every ``poll_seconds`` for changes other workers make,
so a thousand waiting pages cost one read per interval, not a thousand.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Awaitable, Callable


class TemplateHolds:
    """The waiting pages of one crawl process, by template id."""

    def __init__(self, poll_seconds: float) -> None:
        self.poll_seconds = poll_seconds
        self._events: dict[str, asyncio.Event] = {}
        self._watched: set[str] = set()
        self._clock = itertools.count(1)
        self._changed_at: dict[str, int] = {}  # when each template last changed here
        self.held_bytes = 0  # the bodies of the pages waiting
        self._waiting: dict[str, int] = {}  # pages waiting for their own template, by its id
        self._waiting_lock = threading.Lock()  # matching reads it from worker threads

    def take(self, size: int, limit: int) -> bool:
        """Room for one more waiting page of ``size`` bytes (False: past ``limit``)."""
        if self.held_bytes + size > limit:
            return False
        self.held_bytes += size
        return True

    def give_back(self, size: int) -> None:
        self.held_bytes -= size

    def waits_for(self, template_id: str | None, before: str | None) -> str | None:
        """A page now waits for its own template ``template_id`` (None: for none), instead
        of ``before``; returns ``template_id``."""
        if template_id == before:
            return template_id
        with self._waiting_lock:
            if before is not None:
                self._waiting[before] -= 1
                if not self._waiting[before]:
                    del self._waiting[before]
            if template_id is not None:
                self._waiting[template_id] = self._waiting.get(template_id, 0) + 1
        return template_id

    def holding(self) -> frozenset[str]:
        """The templates some page of this process waits for (their answers are claimed)."""
        with self._waiting_lock:
            return frozenset(self._waiting)

    def ticket(self) -> int:
        """Now, for :meth:`wait`: a page takes one before it matches."""
        return next(self._clock)

    def changed(self, template_id: str) -> None:
        """The template changed: its waiters match again."""
        self._changed_at[template_id] = next(self._clock)
        event = self._events.pop(template_id, None)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        """Every waiter matches again (the crawl is stopping)."""
        for template_id in list(self._events):
            self.changed(template_id)

    async def wait(self, template_id: str, ticket: int, rev: int, deadline: float,
                   revision: Callable[[str], Awaitable[int | None]],
                   stopping: Callable[[], bool]) -> bool:
        """Until template ``template_id`` changes here after ``ticket`` or moves past ``rev``
        in the store; False at ``deadline`` (``time.monotonic()``) or when ``stopping``."""
        if self._changed_at.get(template_id, 0) > ticket:
            return True  # it changed while this page was matched
        event = self._events.setdefault(template_id, asyncio.Event())
        if template_id in self._watched:
            return await _until(event, deadline - time.monotonic()) and not stopping()
        self._watched.add(template_id)
        try:
            while time.monotonic() < deadline and not stopping():
                if await _until(event, min(self.poll_seconds, deadline - time.monotonic())):
                    return not stopping()
                current = await revision(template_id)
                if current is None or current > rev:
                    self.changed(template_id)
                    return True
            return False
        finally:
            self._watched.discard(template_id)
            # the other waiters match again; one of them watches next
            self.changed(template_id)


async def _until(event: asyncio.Event, timeout: float) -> bool:
    """Whether ``event`` is set within ``timeout`` seconds."""
    if timeout <= 0:
        return event.is_set()
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True
