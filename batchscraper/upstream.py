"""The egress guard's client side of a proxy chain: a tunnel to a target through a user's proxy.

Two protocols, each on a connection the guard already opened to the proxy:

- HTTP ``CONNECT`` (``http://`` and ``https://`` proxies), with the login as
  ``Proxy-Authorization: Basic``;
- SOCKS5 (RFC 1928) with a username/password login (RFC 1929). ``socks5://``
  is sent the address the guard checked (the proxy connects to exactly that);
  ``socks5h://`` is sent the name (the proxy resolves it).

A failure is one of two kinds, because only the first benches the proxy:
:class:`UpstreamProxyError` — the proxy itself (it refused the login, does not
speak its protocol, or reports its own failure) — and
:class:`UpstreamTargetError` — the proxy answered but did not reach the target.
Messages name the proxy by its redacted URL only.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re
import ssl
from concurrent.futures import Executor
from dataclasses import dataclass, field

from batchscraper.downloadermiddlewares.ssrf import IPAddress, Resolver, parse_ip_literal
from batchscraper.egress_http import MAX_HEAD_BYTES
from batchscraper.proxies import ProxyEndpoint

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]

PROXY_AUTH_REQUIRED = 407
STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})")

SOCKS_VERSION = 5
SOCKS_LOGIN_VERSION = 1  # RFC 1929's sub-negotiation
NO_LOGIN, USER_PASSWORD, NO_ACCEPTABLE_METHOD = 0x00, 0x02, 0xFF
SOCKS_CONNECT = 1
ATYP_IPV4, ATYP_NAME, ATYP_IPV6 = 1, 3, 4
SOCKS_ADDRESS_BYTES = {ATYP_IPV4: 4, ATYP_IPV6: 16}
MAX_SOCKS_NAME = 255
SOCKS_REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}
# replies that are the proxy's own failure (the rest are about the target)
SOCKS_PROXY_FAULTS = frozenset({1, 7, 8})


class UpstreamProxyError(Exception):
    """The proxy itself failed: unreachable, refused the login, or broke its protocol."""

    def __init__(self, proxy: ProxyEndpoint | None, reason: str) -> None:
        """``reason`` names the proxy already when ``proxy`` is None."""
        self.reason = reason if proxy is None else f"proxy {proxy.redacted}: {reason}"
        super().__init__(self.reason)


class UpstreamTargetError(Exception):
    """The proxy works but did not (or would not) connect to the target."""


@dataclass
class ProxyDialer:
    """The egress guard's connections to and through proxies.

    ``checked``: the guard's resolver that refuses (``FetchBlockedError``) what
    the policy does not allow; a user's proxy is looked up with it, so the
    connection goes to an address just checked. ``resolve``: the plain resolver,
    for the operator's (trusted) proxies.
    """

    checked: Resolver
    resolve: Resolver
    executor: Executor | None = None  # where names are resolved (None: the loop's default)
    _tls: ssl.SSLContext | None = field(default=None, repr=False)

    async def connect(self, proxy: ProxyEndpoint, trusted: bool, deadline: float) -> Streams:
        """A connection to ``proxy`` (TLS to an ``https://`` one) before ``deadline``."""
        loop = asyncio.get_running_loop()
        lookup = self.resolve if trusted else self.checked
        try:
            addresses = await asyncio.wait_for(
                loop.run_in_executor(self.executor, lookup, proxy.host, proxy.port),
                max(deadline - loop.time(), 0.0),
            )
        except (OSError, TimeoutError) as exc:
            raise UpstreamProxyError(proxy, f"cannot resolve: {exc or 'no answer'}") from None
        tls = self._tls_context() if proxy.scheme == "https" else None
        try:
            return await connect_first(addresses, proxy.port, deadline, tls, proxy.host)
        except OSError as exc:
            raise UpstreamProxyError(proxy, f"cannot connect: {exc}") from None

    async def tunnel(
        self,
        proxy: ProxyEndpoint,
        trusted: bool,
        targets: list[str] | list[IPAddress],
        port: int,
        deadline: float,
    ) -> Streams:
        """A tunnel through ``proxy`` to the first of ``targets`` (on ``port``) it reaches."""
        loop = asyncio.get_running_loop()
        problem = "no time left"
        for target in targets:
            streams = await self.connect(proxy, trusted, deadline)
            try:
                await asyncio.wait_for(open_tunnel(proxy, streams, target, port),
                                       max(deadline - loop.time(), 0.0))
            except UpstreamTargetError as exc:
                problem = str(exc)
            except TimeoutError:
                problem = f"proxy {proxy.redacted} did not reach {target}:{port} in time"
            except OSError as exc:
                streams[1].close()
                raise UpstreamProxyError(proxy, f"connection failed: {exc}") from None
            except BaseException:
                streams[1].close()
                raise
            else:
                return streams
            streams[1].close()
        raise UpstreamTargetError(problem)

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls


async def connect_first(
    addresses: list[IPAddress],
    port: int,
    deadline: float,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> Streams:
    """A connection to the first of ``addresses`` that answers before ``deadline`` (loop
    time); ``OSError`` saying why none did."""
    loop = asyncio.get_running_loop()
    last_error: BaseException | None = None
    for address in dict.fromkeys(addresses):
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(str(address), port, limit=MAX_HEAD_BYTES, ssl=tls,
                                        server_hostname=server_hostname if tls else None),
                max(deadline - loop.time(), 0.0),
            )
        except (OSError, TimeoutError) as exc:
            last_error = exc
    raise OSError(str(last_error or "no time left"))


def basic_login(proxy: ProxyEndpoint) -> bytes:
    """The ``Proxy-Authorization`` header line (CRLF included) for the proxy's login, or b""."""
    if not proxy.has_credentials:
        return b""
    token = base64.b64encode(f"{proxy.username}:{proxy.password or ''}".encode()).decode()
    return f"Proxy-Authorization: Basic {token}\r\n".encode("latin-1")


def login_refused(proxy: ProxyEndpoint) -> str:
    """Why a proxy's 407 is its failure (a login is its configuration, not the target's)."""
    said = "refused the login" if proxy.has_credentials else "wants a login (none given)"
    return f"answered 407 Proxy Authentication Required: it {said}"


def response_status(head: bytes) -> int | None:
    """The status of an HTTP response head, or None when it is not one."""
    found = STATUS_LINE.match(head)
    return int(found.group(1)) if found else None


async def open_tunnel(
    proxy: ProxyEndpoint, streams: Streams, target: str | IPAddress, port: int
) -> None:
    """Turn ``streams``, open to ``proxy``, into a tunnel to ``target:port``."""
    reader, writer = streams
    if proxy.is_socks:
        await socks5_connect(proxy, reader, writer, target, port)
    else:
        await http_connect(proxy, reader, writer, str(target), port)


async def http_connect(
    proxy: ProxyEndpoint,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    host: str,
    port: int,
) -> None:
    """``CONNECT host:port`` through an HTTP proxy; returns once the tunnel is open."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    writer.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n".encode("latin-1")
                 + basic_login(proxy) + b"\r\n")
    await writer.drain()
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        raise UpstreamProxyError(proxy, "closed the connection without answering CONNECT") from None
    status = response_status(head)
    if status is None:
        raise UpstreamProxyError(proxy, "did not answer CONNECT as an HTTP proxy")
    if status == PROXY_AUTH_REQUIRED:
        raise UpstreamProxyError(proxy, login_refused(proxy))
    if not 200 <= status < 300:
        raise UpstreamTargetError(
            f"proxy {proxy.redacted} answered {status} to CONNECT {authority}"
        )


async def socks5_connect(
    proxy: ProxyEndpoint,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    target: str | IPAddress,
    port: int,
) -> None:
    """RFC 1928 ``CONNECT`` to ``target:port`` (an address, or a name the proxy resolves)."""
    methods = bytes([NO_LOGIN, USER_PASSWORD] if proxy.has_credentials else [NO_LOGIN])
    writer.write(bytes([SOCKS_VERSION, len(methods)]) + methods)
    version, method = await _read(proxy, reader, 2)
    if version != SOCKS_VERSION:
        raise UpstreamProxyError(proxy, "does not speak SOCKS5")
    if method == USER_PASSWORD and proxy.has_credentials:
        await _socks_login(proxy, reader, writer)
    elif method == USER_PASSWORD:
        raise UpstreamProxyError(proxy, "wants a login (none given)")
    elif method != NO_LOGIN:
        raise UpstreamProxyError(proxy, "accepts none of the offered login methods")
    writer.write(bytes([SOCKS_VERSION, SOCKS_CONNECT, 0]) + socks_address(target)
                 + port.to_bytes(2, "big"))
    version, reply, _, kind = await _read(proxy, reader, 4)
    if version != SOCKS_VERSION:
        raise UpstreamProxyError(proxy, "broke the SOCKS5 protocol")
    if reply:
        text = SOCKS_REPLIES.get(reply, f"unknown reply {reply}")
        if reply in SOCKS_PROXY_FAULTS or reply not in SOCKS_REPLIES:
            raise UpstreamProxyError(proxy, f"answered: {text}")
        raise UpstreamTargetError(f"proxy {proxy.redacted} did not reach {target}:{port}: {text}")
    if kind == ATYP_NAME:
        (length,) = await _read(proxy, reader, 1)
    elif kind in SOCKS_ADDRESS_BYTES:
        length = SOCKS_ADDRESS_BYTES[kind]
    else:
        raise UpstreamProxyError(proxy, "broke the SOCKS5 protocol")
    await _read(proxy, reader, length + 2)  # the bound address and port: not needed


async def _socks_login(
    proxy: ProxyEndpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """RFC 1929: username and password (each 1-255 bytes, checked when the URL was parsed)."""
    username = (proxy.username or "").encode()
    password = (proxy.password or "").encode()
    writer.write(bytes([SOCKS_LOGIN_VERSION, len(username)]) + username
                 + bytes([len(password)]) + password)
    _, status = await _read(proxy, reader, 2)
    if status:
        raise UpstreamProxyError(proxy, "refused the login")


def socks_address(target: str | IPAddress) -> bytes:
    """ATYP and DST.ADDR of a SOCKS5 request: an IPv4 or IPv6 address, or a name."""
    address = target if not isinstance(target, str) else parse_ip_literal(target)
    if isinstance(address, ipaddress.IPv4Address):
        return bytes([ATYP_IPV4]) + address.packed
    if isinstance(address, ipaddress.IPv6Address):
        return bytes([ATYP_IPV6]) + address.packed
    try:
        name = str(target).encode("ascii")
    except UnicodeEncodeError:
        raise UpstreamTargetError(f"host {target!r} is not an ASCII name") from None
    if not 0 < len(name) <= MAX_SOCKS_NAME:
        raise UpstreamTargetError(f"host name of {len(name)} bytes is too long for SOCKS5")
    return bytes([ATYP_NAME, len(name)]) + name


async def _read(proxy: ProxyEndpoint, reader: asyncio.StreamReader, size: int) -> bytes:
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise UpstreamProxyError(
            proxy, "closed the connection during the SOCKS5 handshake"
        ) from None
