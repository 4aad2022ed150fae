"""HTTP messages as the egress guard reads, rewrites and relays them.

The guard answers one request per client connection: a ``CONNECT`` becomes a
tunnel, an absolute-form request for an ``http`` URL is sent on (origin-form
to the target, or absolute-form with the login to an HTTP proxy), and its
response head is passed back with ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from urllib.parse import urlsplit

from batchscraper.downloadermiddlewares.ssrf import normalised_host

MAX_HEAD_BYTES = 64 * 1024  # a request or response head longer than this is refused
PIPE_CHUNK = 64 * 1024
HOP_HEADERS = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization"})
BLOCKED_HEADER = "X-Batchscraper-Blocked"


class Refused(Exception):
    """A request the guard answers itself, with nothing sent upstream."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def request_target(target: str, tunnel: bool) -> tuple[str, int, str]:
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


def outgoing_request(
    method: str, url: str, version: str, header_block: bytes, proxy_login: bytes | None = None
) -> bytes:
    """The request as it is sent on, one per connection: origin-form to the target, or
    (``proxy_login`` given, possibly b"") absolute-form with that login to an HTTP proxy.

    The client's own hop-by-hop headers (its ``Proxy-Authorization`` included) never pass.
    """
    if proxy_login is None:
        parts = urlsplit(url)
        url = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {url} {version}".encode("latin-1")]
    for line in header_block.split(b"\r\n"):
        name = line.partition(b":")[0].strip().lower()
        if line and name not in HOP_HEADERS:
            lines.append(line)
    if proxy_login:
        lines.append(proxy_login.rstrip(b"\r\n"))
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def forward_response_head(
    up_reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    check_status: Callable[[int], None] | None = None,
) -> None:
    """Pass the response head on, telling the client not to reuse the connection.

    The next request on a reused connection could be for another host, and it
    would be relayed to this origin unchecked: ``Connection: close`` goes right
    after the final status line, informational (1xx) heads are passed on first,
    and a head that could hide another ``Connection`` header (a bare LF, a
    folded line) is refused. ``check_status`` sees the final status first (and
    may raise).
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
    if check_status is not None:
        parts = status_line.split(b" ", 2)
        if len(parts) > 1 and parts[1].isdigit():
            check_status(int(parts[1]))
    kept = [line for line in headers if line.partition(b":")[0].strip().lower() not in HOP_HEADERS]
    writer.write(b"\r\n".join([status_line, b"Connection: close", *kept]) + b"\r\n\r\n")


def _informational(status_line: bytes) -> bool:
    """A 1xx status line other than 101 (which would switch protocols: final here)."""
    parts = status_line.split(b" ", 2)
    return len(parts) > 1 and parts[1][:1] == b"1" and parts[1] != b"101"


async def relay(
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


def refusal_answer(refused: Refused) -> bytes:
    body = f"batchscraper egress guard: {refused.reason}\n".encode()
    reason = refused.reason.replace("\r", " ").replace("\n", " ")
    return (
        f"HTTP/1.1 {refused.status} Refused\r\n"
        f"{BLOCKED_HEADER}: {reason}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1", "replace") + body
