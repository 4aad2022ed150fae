"""Proxy rotation: which proxy each request goes through, and benching the ones that fail.

The request's proxies are its batch's (or its URL's) option ``proxy``, else the
operator's ``BATCH_PROXIES``. A domain keeps its proxy until that proxy fails;
a new domain gets the next proxy in turn. A proxy that fails — it refuses the
connection, answers 407, or the target bans it ``BATCH_PROXY_MAX_BANS`` times in
a row — is benched (``BATCH_PROXY_BENCH_SECONDS``, doubled per failure in a row,
at most ``BATCH_PROXY_BENCH_MAX_SECONDS``) and the request goes through another
(not counted as a retry). When none is left the request fails with
``PROXY_FAILED``.

The same choice is made for both paths, from one state (a domain keeps its
proxy whether its page is fetched or rendered):

- an HTTP fetch through an ``http://`` proxy gets ``request.meta["proxy"]``;
  Scrapy's ``HttpProxyMiddleware`` (after this one) turns the credentials into
  the ``Proxy-Authorization`` header;
- an HTTP fetch through a ``socks5://``, ``socks5h://`` or ``https://`` proxy
  (which Scrapy does not speak) gets the egress guard's route through that
  proxy as its ``meta["proxy"]`` (no credentials: the guard holds them);
- a browser request gets the route in ``meta["batch_egress_route"]``, and the
  browser's handler renders it in a context whose proxy is that route.

What the guard reports for a route (the proxy failed, a target refused) is read
back from its log. A user's proxy must pass the crawl's address policy like a
target (else it is an SSRF door into our network); the operator's are trusted.
The SSRF guard still checks every target.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from scrapy import Request
from scrapy.core.downloader.handlers.http11 import TunnelError
from scrapy.crawler import Crawler
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadConnectionRefusedError,
    NotConfigured,
)
from scrapy.http import Response
from scrapy.statscollectors import StatsCollector
from twisted.internet.error import ConnectError, DNSLookupError

from batchscraper.downloadermiddlewares.ssrf import AddressPolicy, guard_policy
from batchscraper.egress import EgressGuard, crawl_guard
from batchscraper.egress_http import BLOCKED_HEADER
from batchscraper.egress_routes import Refusal
from batchscraper.exceptions import DNSError, FetchBlockedError, ProxyFailedError
from batchscraper.proxies import ProxyEndpoint, parse_proxies, via_egress_guard
from batchscraper.upstream import UpstreamProxyError

logger = logging.getLogger(__name__)

Pool = tuple[ProxyEndpoint, ...]
# failures that are the proxy's own: its connection, its name, its CONNECT answer
PROXY_EXCEPTIONS = (
    ConnectError, DNSLookupError, DownloadConnectionRefusedError, CannotResolveHostError,
)
PROXY_AUTH_REQUIRED = 407
# the status in a TunnelError's message: Scrapy's {'status': 407, ...}, or the raw answer
TUNNEL_STATUS = re.compile(r"'status': (\d{3})|HTTP/1\.[01] (\d{3})")


@dataclass(frozen=True)
class ProxyConfig:
    operator: Pool
    bench_seconds: float
    bench_max_seconds: float
    ban_codes: frozenset[int]
    max_bans: int


@dataclass
class ProxyState:
    failures: int = 0  # in a row
    bans: int = 0  # ban answers in a row
    benched_until: float = 0.0


class ProxyRotationMiddleware:
    """Downloader middleware: a proxy per request, sticky per domain, failing ones benched."""

    def __init__(
        self,
        config: ProxyConfig,
        policy: AddressPolicy,
        stats: StatsCollector,
        guard: EgressGuard,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.policy = policy
        self.stats = stats
        self.guard = guard
        self.clock = clock
        self.states: dict[ProxyEndpoint, ProxyState] = {}
        self.sticky: dict[tuple[Pool, str], ProxyEndpoint] = {}
        self.turn: dict[Pool, int] = {}
        self.refused: dict[ProxyEndpoint, str | None] = {}  # a user proxy's policy verdict

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ProxyRotationMiddleware:
        settings = crawler.settings
        if not settings.getbool("BATCH_PROXY_ENABLED"):
            raise NotConfigured
        operator = settings.getlist("BATCH_PROXIES")
        try:
            pool = parse_proxies(operator) if operator else ()
        except ValueError as exc:
            raise ValueError(f"BATCH_PROXIES: {exc}") from None
        config = ProxyConfig(
            operator=pool,
            bench_seconds=settings.getfloat("BATCH_PROXY_BENCH_SECONDS"),
            bench_max_seconds=settings.getfloat("BATCH_PROXY_BENCH_MAX_SECONDS"),
            ban_codes=frozenset(int(code) for code in settings.getlist("BATCH_PROXY_BAN_CODES")),
            max_bans=settings.getint("BATCH_PROXY_MAX_BANS"),
        )
        assert crawler.stats is not None
        return cls(config, guard_policy(settings), crawler.stats, crawl_guard(crawler))

    # -- requests ----------------------------------------------------------------

    async def process_request(self, request: Request) -> None:
        pool: Pool = request.meta.get("batch_proxies") or ()
        trusted = not pool  # the operator's
        if pool:
            await self._check_user_proxies(pool)
        else:
            pool = self.config.operator
        if not pool:
            return
        proxy = self._choose(pool, _domain(request), request.meta.get("proxies_tried", ()))
        request.meta["batch_proxy"] = proxy
        request.meta["batch_proxy_pool"] = pool
        browser = bool(request.meta.get("playwright"))
        route = None
        if browser or via_egress_guard(proxy):
            route = await self.guard.route(proxy, trusted)  # held until the download is over
            request.meta["batch_egress_mark"] = self.guard.mark()
        request.meta["batch_egress_route"] = route
        if not browser:  # HttpProxyMiddleware moves the credentials out
            request.meta["proxy"] = route.url if route else proxy.url
        self.stats.inc_value("batch/proxy/requests")

    async def _check_user_proxies(self, pool: Pool) -> None:
        """A user's proxy is refused like a target whose address is not public."""
        for proxy in pool:
            if proxy not in self.refused:
                self.refused[proxy] = await asyncio.to_thread(self._policy_problem, proxy)
            problem = self.refused[proxy]
            if problem:
                raise FetchBlockedError(f"proxy {proxy.redacted}: {problem}")

    def _policy_problem(self, proxy: ProxyEndpoint) -> str | None:
        try:
            host = self.policy.check_target(proxy.host, proxy.port)
            self.policy.addresses_to_connect(host, proxy.port)
        except FetchBlockedError as exc:
            return exc.message
        except OSError:
            return None  # a name that does not resolve fails as the proxy's connect error
        return None

    def _choose(self, pool: Pool, domain: str, tried: Pool) -> ProxyEndpoint:
        """The domain's proxy while it works, else the next one in turn that is not benched."""
        current = self.sticky.get((pool, domain))
        if current is not None and current not in tried and self._available(current):
            return current
        candidates = [proxy for proxy in pool if proxy not in tried and self._available(proxy)]
        if not candidates:
            self.stats.inc_value("batch/proxy/exhausted")
            shown = ", ".join(proxy.redacted for proxy in pool)
            raise ProxyFailedError(f"every proxy failed or is benched: {shown}")
        turn = self.turn.get(pool, 0)
        self.turn[pool] = turn + 1
        chosen = candidates[turn % len(candidates)]
        self.sticky[(pool, domain)] = chosen
        return chosen

    def _available(self, proxy: ProxyEndpoint) -> bool:
        state = self.states.get(proxy)
        return state is None or state.benched_until <= self.clock()

    # -- outcomes ----------------------------------------------------------------

    def process_response(self, request: Request, response: Response) -> Request | Response:
        proxy: ProxyEndpoint | None = request.meta.get("batch_proxy")
        if proxy is None:
            return response
        self._release_route(request)
        if BLOCKED_HEADER.encode() in response.headers:  # perhaps the guard's own answer
            refusal = self._guard_refusal(request)
            if refusal is not None:
                return self._refused(request, proxy, refusal)
        state = self.states.setdefault(proxy, ProxyState())
        if response.status == PROXY_AUTH_REQUIRED:
            return self._failed(request, proxy, "answered 407 Proxy Authentication Required")
        if response.status in self.config.ban_codes:
            state.bans += 1
            self.stats.inc_value("batch/proxy/bans")
            if state.bans >= self.config.max_bans:
                return self._failed(request, proxy, f"banned {state.bans} times in a row")
            return response
        state.failures = state.bans = 0
        return response

    def process_exception(self, request: Request, exception: Exception) -> Request | None:
        proxy: ProxyEndpoint | None = request.meta.get("batch_proxy")
        if proxy is None:
            return None
        self._release_route(request)
        if isinstance(exception, UpstreamProxyError):  # the guard's report, for the browser
            return self._failed(request, proxy, exception.reason)
        refusal = self._guard_refusal(request)
        if refusal is not None:
            return self._refused(request, proxy, refusal)
        if not _is_proxy_failure(exception):
            return None
        return self._failed(request, proxy, type(exception).__name__)

    def _release_route(self, request: Request) -> None:
        """The download is over: the guard may close the route when it needs room."""
        route = request.meta.get("batch_egress_route")
        if route is not None:
            self.guard.release(route)

    def _guard_refusal(self, request: Request) -> Refusal | None:
        """What the egress guard reported for an HTTP fetch on one of its routes."""
        route = request.meta.get("batch_egress_route")
        if route is None or request.meta.get("playwright"):
            return None  # the browser's handler reads the guard's log itself
        parts = urlsplit(request.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return self.guard.refusal_for(route.number, parts.hostname or "", port,
                                      request.meta.get("batch_egress_mark", 0))

    def _refused(self, request: Request, proxy: ProxyEndpoint, refusal: Refusal) -> Request:
        """The guard's report: its proxy failed (bench it), or the target was refused."""
        if refusal.kind == "proxy":
            return self._failed(request, proxy, refusal.reason)
        if refusal.kind == "blocked":
            raise FetchBlockedError(refusal.reason)
        raise DNSError(refusal.reason)

    def _failed(self, request: Request, proxy: ProxyEndpoint, reason: str) -> Request:
        """Bench ``proxy`` and send the request through another one (PROXY_FAILED if none)."""
        state = self.states.setdefault(proxy, ProxyState())
        state.failures += 1
        state.bans = 0
        bench = min(self.config.bench_seconds * 2 ** (state.failures - 1),
                    self.config.bench_max_seconds)
        state.benched_until = self.clock() + bench
        self.stats.inc_value("batch/proxy/benched")
        logger.warning("Proxy %s benched for %.0f s: %s", proxy.redacted, bench, reason)
        tried = (*request.meta.get("proxies_tried", ()), proxy)
        pool = request.meta["batch_proxy_pool"]
        self._choose(pool, _domain(request), tried)  # raises PROXY_FAILED when none is left
        self.stats.inc_value("batch/proxy/rerouted")
        return request.replace(meta={**request.meta, "proxies_tried": tried}, dont_filter=True)


def _domain(request: Request) -> str:
    return (urlsplit(request.url).hostname or "").lower()


def _is_proxy_failure(exception: Exception) -> bool:
    if isinstance(exception, TunnelError):  # the proxy's CONNECT answer, or none at all
        text = str(exception)
        found = TUNNEL_STATUS.search(text)
        status = next((int(group) for group in found.groups() if group), 0) if found else 0
        return status == PROXY_AUTH_REQUIRED or "b''" in text
    return isinstance(exception, PROXY_EXCEPTIONS)
