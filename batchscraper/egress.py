"""The browser's egress guard: a forward proxy that every Chromium connection goes through.

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
- connects to exactly the address it checked (the name is resolved once), and
- refuses anything else with 403 before a byte is sent upstream.

Refusals are kept in a short log that the download handler
(:mod:`batchscraper.browser`) reads to fail the item with ``FETCH_BLOCKED``
and the refused URL.

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
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from batchscraper.downloadermiddlewares.ssrf import (
    AddressPolicy,
    FetchBlockedError,
    IPAddress,
    Resolver,
    normalised_host,
)

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024  # a request or response head longer than this is refused
PIPE_CHUNK = 64 * 1024
REFUSAL_MEMORY = 1_000  # the log keeps the latest refusals only
RESOLVER_THREADS = 8  # names resolved at once; a slow DNS server holds one each
STOP_SECONDS = 10.0
HOP_HEADERS = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization"})
BLOCKED_HEADER = "X-Batchscraper-Blocked"


@dataclass(frozen=True)
class Refusal:
    """A connection the guard did not make: ``kind`` is ``blocked`` or ``unresolved``."""

    number: int
    kind: str
    host: str
    port: int
    url: str
    reason: str


class Refused(Exception):
    """A request the guard answers itself, with nothing sent upstream."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class EgressGuard:
    """A loopback forward proxy that connects only to addresses the policy allows."""

    def __init__(self, policy: AddressPolicy, resolve: Resolver, connect_timeout: float) -> None:
        self.policy = policy
        self.resolve = resolve
        self.connect_timeout = connect_timeout
        self.port = 0
        self.connections = 0
        self.cpu_seconds = 0.0  # the guard thread's CPU time (not its resolvers'), once stopped
        self._refusals: deque[Refusal] = deque(maxlen=REFUSAL_MEMORY)
        self._numbered = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resolvers: ThreadPoolExecutor | None = None  # made by start()
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- life cycle (called from the crawl's thread) ------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Listening: the browser may be pointed at :attr:`url`."""
        return bool(self.port) and self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Listen on a free loopback port, serving from a thread of its own.

        Raises ``OSError`` when it cannot listen; the guard is then not running,
        and no browser may be started without it.
        """
        self._loop = asyncio.new_event_loop()
        self._resolvers = ThreadPoolExecutor(RESOLVER_THREADS, thread_name_prefix="egress-dns")
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

    def stop(self) -> None:
        """Close the listener and every open connection, then end the thread."""
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
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._accept, "127.0.0.1", 0, limit=MAX_HEAD_BYTES)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except OSError as exc:
            errors.append(exc)
            self._loop.close()
            return
        finally:
            ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.cpu_seconds = time.thread_time()

    # -- the refusal log (read from the crawl's thread) -----------------------------

    def mark(self) -> int:
        """A position in the refusal log: :meth:`refusals_since` returns what came after."""
        with self._lock:
            return self._numbered

    def refusals_since(self, mark: int) -> list[Refusal]:
        with self._lock:
            return [refusal for refusal in self._refusals if refusal.number > mark]

    def _log(self, kind: str, host: str, port: int, url: str, reason: str) -> None:
        with self._lock:
            self._numbered += 1
            self._refusals.append(Refusal(self._numbered, kind, host, port, url, reason))

    # -- serving (the guard's thread) -------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # the browser went away, or sent what is not HTTP
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, _, header_block = head.partition(b"\r\n")
        method, target, version = request_line.decode("latin-1").split(" ", 2)
        tunnel = method.upper() == "CONNECT"
        try:
            host, port, url = _target(target, tunnel)
            upstream = await self._connect(host, port, url)
        except Refused as refused:
            writer.write(_refusal_answer(refused))
            await writer.drain()
            return
        self.connections += 1
        up_reader, up_writer = upstream
        try:
            if tunnel:
                writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            else:
                up_writer.write(_origin_request(method, url, version, header_block))
                try:
                    await _forward_response_head(up_reader, writer)
                except Refused as refused:
                    writer.write(_refusal_answer(refused))
                    await writer.drain()
                    return
            await _relay(reader, writer, up_reader, up_writer)
        finally:
            up_writer.close()

    async def _connect(
        self, host: str, port: int, url: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Check ``host:port`` and connect to an address just checked (never re-resolved).

        One deadline, ``connect_timeout``, bounds resolving and connecting together.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        try:
            addresses = await asyncio.wait_for(
                loop.run_in_executor(self._resolvers, self._checked_addresses, host, port),
                self.connect_timeout,
            )
        except FetchBlockedError as exc:
            self._log("blocked", host, port, url, exc.message)
            logger.info("Egress guard refused %s: %s", url, exc.message)
            raise Refused(403, exc.message) from None
        except (OSError, TimeoutError) as exc:
            reason = f"cannot resolve {host}: {exc or 'no answer in time'}"
            self._log("unresolved", host, port, url, reason)
            raise Refused(502, reason) from None
        last_error: BaseException | None = None
        for address in dict.fromkeys(addresses):
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(str(address), port, limit=MAX_HEAD_BYTES),
                    max(deadline - loop.time(), 0.0),
                )
            except (OSError, TimeoutError) as exc:
                last_error = exc
        reason = f"cannot connect to {host}:{port}: {last_error or 'no time left'}"
        raise Refused(502, reason)

    def _checked_addresses(self, host: str, port: int) -> list[IPAddress]:
        """The addresses to connect to, all allowed (blocking: a resolver thread)."""
        checked = self.policy.check_target(host, port)
        return self.policy.addresses_to_connect(checked, port, self.resolve)


def _target(target: str, tunnel: bool) -> tuple[str, int, str]:
    """(host, port, URL) of a proxy request's target: ``host:port`` or an absolute URL."""
    if tunnel:
        parts = urlsplit(f"//{target}")
        if parts.hostname is None or parts.port is None:
            raise Refused(400, f"bad CONNECT target {target!r}")
        return normalised_host(parts.hostname), parts.port, target
    parts = urlsplit(target)
    if parts.scheme != "http" or not parts.hostname:
        raise Refused(400, f"not a proxy request for an http URL: {target[:200]!r}")
    return normalised_host(parts.hostname), parts.port or 80, target


def _origin_request(method: str, url: str, version: str, header_block: bytes) -> bytes:
    """The request as the origin server must see it: path only, one request per connection."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {path} {version}".encode("latin-1")]
    for line in header_block.split(b"\r\n"):
        name = line.partition(b":")[0].strip().lower()
        if line and name not in HOP_HEADERS:
            lines.append(line)
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _forward_response_head(
    up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Pass the origin's response head on, telling the browser not to reuse the connection.

    The next request on a reused connection could be for another host, and it
    would be relayed to this origin unchecked: ``Connection: close`` goes right
    after the final status line, informational (1xx) heads are passed on first,
    and a head that could hide another ``Connection`` header (a bare LF, a
    folded line) is refused.
    """
    while True:
        head = await up_reader.readuntil(b"\r\n\r\n")
        status_line, *headers = head[:-4].split(b"\r\n")
        if b"\n" in head[:-4].replace(b"\r\n", b"") or any(
            line[:1] in (b" ", b"\t") for line in headers
        ):
            raise Refused(502, "the origin sent a malformed response head")
        if not _informational(status_line):
            break
        writer.write(head)
    kept = [line for line in headers if line.partition(b":")[0].strip().lower() not in HOP_HEADERS]
    writer.write(b"\r\n".join([status_line, b"Connection: close", *kept]) + b"\r\n\r\n")


def _informational(status_line: bytes) -> bool:
    """A 1xx status line other than 101 (which would switch protocols: final here)."""
    parts = status_line.split(b" ", 2)
    return len(parts) > 1 and parts[1][:1] == b"1" and parts[1] != b"101"


async def _relay(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    """Copy both ways until either side closes."""
    directions = [
        asyncio.ensure_future(_copy(reader, up_writer)),
        asyncio.ensure_future(_copy(up_reader, writer)),
    ]
    try:
        await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for direction in directions:
            direction.cancel()
        await asyncio.gather(*directions, return_exceptions=True)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(PIPE_CHUNK):
            writer.write(data)
            await writer.drain()


def _refusal_answer(refused: Refused) -> bytes:
    body = f"batchscraper egress guard: {refused.reason}\n".encode()
    reason = refused.reason.replace("\r", " ").replace("\n", " ")
    return (
        f"HTTP/1.1 {refused.status} Refused\r\n"
        f"{BLOCKED_HEADER}: {reason}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1", "replace") + body
