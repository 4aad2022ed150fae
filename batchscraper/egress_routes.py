"""The egress guard's state that its thread and the crawl's share: routes and refusals.

A :class:`Route` is a way out of the guard with a loopback listener of its own:
straight to targets, or through one proxy. The crawl's thread *holds* a route
for each request that will connect to it, so the guard never closes a listener
a request is about to use. The :class:`RefusalLog` keeps what the guard did not
connect, for the crawl to attribute.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter, deque
from dataclasses import dataclass

from batchscraper.downloadermiddlewares.ssrf import normalised_host
from batchscraper.proxies import ProxyEndpoint

DIRECT = 0  # the route straight to targets
REFUSAL_MEMORY = 1_000  # the log keeps the latest refusals only


@dataclass(frozen=True)
class Route:
    """A way out of the guard, with its own loopback listener: direct, or through a proxy."""

    number: int
    port: int
    upstream: ProxyEndpoint | None = None
    trusted: bool = False  # the operator's proxy: its own address is not checked

    @property
    def url(self) -> str:
        """Where a client connects to go this way (it carries no credentials)."""
        return f"http://127.0.0.1:{self.port}"


RouteKey = tuple[ProxyEndpoint | None, bool]  # (upstream, trusted)


@dataclass(frozen=True)
class Refusal:
    """A connection the guard did not make: ``kind`` is ``blocked``, ``unresolved``, or
    ``proxy`` (the route's proxy failed: to be benched)."""

    number: int
    kind: str
    host: str
    port: int
    url: str
    reason: str
    route: int = DIRECT


class RouteTable:
    """The guard's routes, the least recently used first, with the holds on each."""

    def __init__(self, max_routes: int | None) -> None:
        self.max_routes = max_routes  # kept beyond the held ones (None: no bound)
        self._lock = threading.Lock()
        self._routes: dict[RouteKey, Route] = {}
        self._holds: Counter[int] = Counter()
        self._numbers = itertools.count()

    def hold(self, key: RouteKey) -> Route | None:
        """The route for ``key``, held, or None when there is none (yet, or any more)."""
        with self._lock:
            route = self._routes.pop(key, None)
            if route is not None:
                self._routes[key] = route  # now the most recently used
                self._holds[route.number] += 1
            return route

    def release(self, route: Route) -> None:
        with self._lock:
            if self._holds[route.number] > 0:
                self._holds[route.number] -= 1

    def next_number(self) -> int:
        return next(self._numbers)

    def add(self, route: Route, hold: bool) -> None:
        with self._lock:
            self._routes[(route.upstream, route.trusted)] = route
            self._holds[route.number] += hold

    def make_room(self) -> list[Route]:
        """Routes to close so one more fits: the least recently used ones nobody holds
        beyond ``max_routes`` (never the direct one)."""
        if self.max_routes is None:
            return []
        with self._lock:
            idle = [key for key, route in self._routes.items()
                    if route.number != DIRECT and not self._holds[route.number]]
            excess = max(len(self._routes) + 1 - self.max_routes, 0)
            return [self._routes.pop(key) for key in idle[:excess]]

    def clear(self) -> None:
        with self._lock:
            self._routes.clear()
            self._holds.clear()
            self._numbers = itertools.count()


class RefusalLog:
    """The latest refusals, numbered: read from a :meth:`mark`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refusals: deque[Refusal] = deque(maxlen=REFUSAL_MEMORY)
        self._numbered = 0

    def mark(self) -> int:
        """A position in the log: :meth:`since` returns what came after."""
        with self._lock:
            return self._numbered

    def since(self, mark: int) -> list[Refusal]:
        with self._lock:
            return [refusal for refusal in self._refusals if refusal.number > mark]

    def latest_for(self, route: int, host: str, port: int, mark: int) -> Refusal | None:
        """The latest refusal since ``mark`` of a connection to ``host:port`` on ``route``."""
        host = normalised_host(host)
        found = [r for r in self.since(mark) if (r.route, r.host, r.port) == (route, host, port)]
        return found[-1] if found else None

    def add(self, kind: str, host: str, port: int, url: str, reason: str, route: int) -> None:
        with self._lock:
            self._numbered += 1
            self._refusals.append(Refusal(self._numbered, kind, host, port, url, reason, route))
