"""The egress guard: a forward proxy that every browser connection, and every fetch through a
proxy Scrapy cannot speak to, goes through.

A check on URLs inside the browser (``page.route``) is not a guard: it does not
see redirect hops, popups, workers or WebSockets, and Chromium resolves names
itself, so a name can answer a public address to the check and a private one
to the connection (DNS rebinding). As egress proxies such as Stripe's
Smokescreen do, this proxy is where the check happens instead: Chromium is
started with ``--proxy-server`` pointing here (loopback not bypassed, its own
resolver disabled, WebRTC kept off UDP), so every HTTP request, HTTPS
``CONNECT`` and WebSocket reaches :class:`EgressGuard`, which

- checks the target with the crawl's :class:`~batchscraper.downloadermiddlewares.ssrf.AddressPolicy`
  (scheme, port, local names, every address the name resolves to),
- connects to exactly the address it checked (the name is resolved once), or,
  on a proxy's route, to the proxy (:mod:`batchscraper.upstream`), and
- refuses anything else with 403 before a byte is sent upstream.

**Routes.** Each way out is a :class:`Route` with its own listener on
127.0.0.1: route 0 goes straight to targets (the browser's launch proxy); a
route through a proxy (:mod:`batchscraper.upstream`) opens at first use, for a
browser context's ``proxy`` or Scrapy's ``meta["proxy"]``. Targets are checked
alike on every route; a user's proxy is checked like a target too (the
operator's ``BATCH_PROXIES`` are trusted). Refusals and proxy failures go to a
short log, read by the browser's handler and the proxy middleware (to fail an
item with ``FETCH_BLOCKED``, or to bench a proxy).

The proxy runs its own asyncio loop in a thread of the crawl process: it keeps
serving the browser even while the reactor thread is busy, and costs no
process start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.utils.misc import load_object

from batchscraper.downloadermiddlewares.ssrf import (
    AddressPolicy,
    FetchBlockedError,
    IPAddress,
    Resolver,
    guard_policy,
)
from batchscraper.egress_http import (
    MAX_HEAD_BYTES,
    Refused,
    forward_response_head,
    outgoing_request,
    refusal_answer,
    relay,
    request_target,
)
from batchscraper.egress_routes import Refusal, RefusalLog, Route, RouteTable
from batchscraper.proxies import ProxyEndpoint
from batchscraper.upstream import (
    PROXY_AUTH_REQUIRED,
    ProxyDialer,
    Streams,
    UpstreamProxyError,
    UpstreamTargetError,
    basic_login,
    connect_first,
    login_refused,
)

logger = logging.getLogger(__name__)

RESOLVER_THREADS = 8  # names resolved at once; a slow DNS server holds one each
STOP_SECONDS = 10.0


class EgressGuard:
    """A loopback forward proxy that connects only to addresses the policy allows."""

    def __init__(
        self,
        policy: AddressPolicy,
        resolve: Resolver,
        connect_timeout: float,
        max_routes: int | None = None,
    ) -> None:
        self.policy = policy
        self.resolve = resolve
        self.connect_timeout = connect_timeout
        self.port = 0  # route 0's
        self.connections = 0
        self.cpu_seconds = 0.0  # the guard thread's CPU time (not its resolvers'), once stopped
        self.refusals = RefusalLog()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resolvers: ThreadPoolExecutor | None = None  # made by start()
        self._thread: threading.Thread | None = None
        self.routes = RouteTable(max_routes)
        self._servers: dict[int, asyncio.Server] = {}  # by route number (the guard's thread)
        self._tasks: set[asyncio.Task[None]] = set()
        self._dialer = ProxyDialer(self._checked_addresses, resolve)

    # -- life cycle (called from the crawl's thread) ------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Listening: the browser may be pointed at :attr:`url`."""
        return bool(self.port) and self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Listen on a free loopback port, serving from a thread of its own (if not yet).

        Raises ``OSError`` when it cannot listen; the guard is then not running,
        and no browser may be started without it.
        """
        if self.running:
            return
        self.routes.clear()
        self._servers = {}
        self._loop = asyncio.new_event_loop()
        self._resolvers = ThreadPoolExecutor(RESOLVER_THREADS, thread_name_prefix="egress-dns")
        self._dialer.executor = self._resolvers
        ready = threading.Event()
        errors: list[OSError] = []
        self._thread = threading.Thread(
            target=self._run, args=(ready, errors), name="egress-guard", daemon=True
        )
        self._thread.start()
        ready.wait()
        if errors:
            self._thread.join()
            self._thread = None
            self._resolvers.shutdown(wait=False)
            raise errors[0]

    async def route(self, upstream: ProxyEndpoint, trusted: bool) -> Route:
        """The route through ``upstream``, held (kept listening) until :meth:`release`.

        Its listener opens at first use (the guard starts if need be); beyond
        ``max_routes``, the least recently used routes nobody holds are closed.
        Awaited on the crawl's own event loop.
        """
        self.start()
        held = self.routes.hold((upstream, trusted))
        if held is not None:
            return held
        assert self._loop is not None
        opening = asyncio.run_coroutine_threadsafe(self._listen(upstream, trusted), self._loop)
        return await asyncio.wrap_future(opening)

    def release(self, route: Route) -> None:
        """The request that held ``route`` is done with it."""
        self.routes.release(route)

    def stop(self) -> None:
        """Close the listeners and every open connection, then end the thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if thread.is_alive():
            with contextlib.suppress(RuntimeError, TimeoutError):  # the loop already ended
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(STOP_SECONDS)
                loop.call_soon_threadsafe(loop.stop)
            thread.join(STOP_SECONDS)
        if self._resolvers is not None:
            self._resolvers.shutdown(wait=False, cancel_futures=True)
        self._thread = None

    def _run(self, ready: threading.Event, errors: list[OSError]) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self.port = self._loop.run_until_complete(self._listen(None, True, hold=False)).port
        except OSError as exc:
            errors.append(exc)
            self._loop.close()
            return
        finally:
            ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _listen(
        self, upstream: ProxyEndpoint | None, trusted: bool, hold: bool = True
    ) -> Route:
        known = self.routes.hold((upstream, trusted)) if hold else None
        if known is not None:
            return known
        for idle in self.routes.make_room():  # their open connections go on
            self._servers.pop(idle.number).close()
        routes: list[Route] = []  # the route, once its port is known

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._accept(routes[0], reader, writer)

        server = await asyncio.start_server(accept, "127.0.0.1", 0, limit=MAX_HEAD_BYTES)
        port = server.sockets[0].getsockname()[1]
        routes.append(Route(self.routes.next_number(), port, upstream, trusted))
        self._servers[routes[0].number] = server
        self.routes.add(routes[0], hold)
        return routes[0]

    async def _shutdown(self) -> None:
        for server in self._servers.values():
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.cpu_seconds = time.thread_time()

    # -- the refusal log (read from the crawl's thread) -----------------------------

    def mark(self) -> int:
        """A position in the refusal log: :meth:`refusals_since` returns what came after."""
        return self.refusals.mark()

    def refusals_since(self, mark: int) -> list[Refusal]:
        return self.refusals.since(mark)

    def refusal_for(self, route: int, host: str, port: int, mark: int) -> Refusal | None:
        """The latest refusal since ``mark`` of a connection to ``host:port`` on ``route``."""
        return self.refusals.latest_for(route, host, port, mark)

    # -- serving (the guard's thread) -------------------------------------------------

    async def _accept(
        self, route: Route, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(route, reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # the client went away, or sent what is not HTTP
        except asyncio.CancelledError:
            pass  # the guard is stopping: the connection closes, as every other one
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(
        self, route: Route, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, _, header_block = head.partition(b"\r\n")
        method, target, version = request_line.decode("latin-1").split(" ", 2)
        tunnel = method.upper() == "CONNECT"
        proxy = route.upstream
        # an HTTP proxy takes a plain http request as it is, with the login added
        login = basic_login(proxy) if proxy and not proxy.is_socks and not tunnel else None
        try:
            host, port, url = request_target(target, tunnel)
            up_reader, up_writer = await self._open(route, host, port, url, login is None)
        except Refused as refused:
            writer.write(refusal_answer(refused))
            await writer.drain()
            return
        self.connections += 1
        try:
            if tunnel:
                writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            else:
                up_writer.write(outgoing_request(method, url, version, header_block, login))
                try:
                    await forward_response_head(up_reader, writer, None if login is None else (
                        lambda status: self._check_login(route, host, port, url, status)))
                except Refused as refused:
                    writer.write(refusal_answer(refused))
                    await writer.drain()
                    return
            await relay(reader, writer, up_reader, up_writer)
        finally:
            up_writer.close()

    def _check_login(self, route: Route, host: str, port: int, url: str, status: int) -> None:
        """An HTTP proxy's 407 to a request it was to pass on is its own failure."""
        if status == PROXY_AUTH_REQUIRED and route.upstream is not None:
            raise self._proxy_failed(route, host, port, url, login_refused(route.upstream))

    def _proxy_failed(self, route: Route, host: str, port: int, url: str, reason: str) -> Refused:
        """Log the route's proxy as failed (to be benched); the answer the client gets."""
        assert route.upstream is not None
        if not reason.startswith("proxy "):
            reason = f"proxy {route.upstream.redacted}: {reason}"
        self.refusals.add("proxy", host, port, url, reason, route.number)
        logger.info("Egress guard could not go through %s", reason)
        return Refused(502, reason)

    async def _open(
        self, route: Route, host: str, port: int, url: str, tunnelled: bool
    ) -> Streams:
        """Check ``host:port``; a connection to it (``tunnelled``) or to the route's proxy.

        One deadline, ``connect_timeout``, bounds resolving, connecting and the
        proxy's handshake together.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        addresses = await self._checked(route, host, port, url)
        proxy = route.upstream
        try:
            if proxy is None:
                return await connect_first(addresses, port, deadline)
            if not tunnelled:
                return await self._dialer.connect(proxy, route.trusted, deadline)
            # socks5:// is sent the address checked here; the others the name
            targets = list(dict.fromkeys(addresses)) if proxy.scheme == "socks5" else [host]
            return await self._dialer.tunnel(proxy, route.trusted, targets, port, deadline)
        except OSError as exc:  # direct only: a proxy's are UpstreamProxyError
            raise Refused(502, f"cannot connect to {host}:{port}: {exc}") from None
        except FetchBlockedError as exc:  # a user's proxy at an address the policy refuses
            assert proxy is not None
            reason = f"proxy {proxy.redacted}: {exc.message}"
            self.refusals.add("blocked", host, port, url, reason, route.number)
            raise Refused(403, reason) from None
        except UpstreamProxyError as exc:
            raise self._proxy_failed(route, host, port, url, exc.reason) from None
        except UpstreamTargetError as exc:
            raise Refused(502, str(exc)) from None

    async def _checked(self, route: Route, host: str, port: int, url: str) -> list[IPAddress]:
        """The target's addresses, all allowed; refusals are logged."""
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self._resolvers, self._checked_addresses, host, port),
                self.connect_timeout,
            )
        except FetchBlockedError as exc:
            self.refusals.add("blocked", host, port, url, exc.message, route.number)
            logger.info("Egress guard refused %s: %s", url, exc.message)
            raise Refused(403, exc.message) from None
        except (OSError, TimeoutError) as exc:
            reason = f"cannot resolve {host}: {exc or 'no answer in time'}"
            self.refusals.add("unresolved", host, port, url, reason, route.number)
            raise Refused(502, reason) from None

    def _checked_addresses(self, host: str, port: int) -> list[IPAddress]:
        """The addresses to connect to, all allowed (blocking: a resolver thread)."""
        checked = self.policy.check_target(host, port)
        return self.policy.addresses_to_connect(checked, port, self.resolve)


_crawl_guards: weakref.WeakKeyDictionary[Crawler, EgressGuard] = weakref.WeakKeyDictionary()


def crawl_guard(crawler: Crawler) -> EgressGuard:
    """The crawl's one egress guard, shared by the browser handlers (``http`` and
    ``https``: one each, with a browser each) and the proxy middleware.

    Made (not started) at the first ask, with the crawl's address policy,
    ``BATCH_EGRESS_RESOLVER`` and ``BATCH_EGRESS_CONNECT_TIMEOUT``; stopped when
    the engine stops (no download runs then), never by one of its users.
    """
    guard = _crawl_guards.get(crawler)
    if guard is None:
        settings = crawler.settings
        guard = EgressGuard(
            guard_policy(settings),
            resolve=load_object(settings.get("BATCH_EGRESS_RESOLVER")),
            connect_timeout=settings.getfloat("BATCH_EGRESS_CONNECT_TIMEOUT"),
            max_routes=settings.getint("BATCH_EGRESS_MAX_ROUTES"),
        )
        _crawl_guards[crawler] = guard
        crawler.signals.connect(_stopper(guard), signal=signals.engine_stopped, weak=False)
    return guard


def _stopper(guard: EgressGuard) -> Callable[[], Coroutine[object, object, None]]:
    async def stop() -> None:
        await asyncio.to_thread(guard.stop)

    return stop
