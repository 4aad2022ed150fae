"""A small real SOCKS5 server (RFC 1928, login per RFC 1929) for the tests; it counts what
passes through it.

``Socks5Proxy()`` accepts ``CONNECT`` for IPv4, IPv6 and name targets and relays
bytes; ``requests`` lists (address type, host, port) it was asked for. With
``credentials=("user", "password")`` it insists on that login; ``reply=5`` answers
every request with that failure code instead of connecting; ``names`` maps a name
to the address it connects to (its own "DNS").
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import socketserver

from tests.proxy_server import ThreadedProxy, _relay

ATYP_NAMES = {1: "ipv4", 3: "name", 4: "ipv6"}


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: Socks5Proxy


def _exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _reply(code: int) -> bytes:
    return bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0])


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            self._handle(self.server.proxy)

    def _handle(self, proxy: Socks5Proxy) -> None:
        conn = self.request
        version, count = _exactly(conn, 2)
        methods = _exactly(conn, count)
        if version != 5:
            return
        if proxy.credentials is None:
            conn.sendall(b"\x05\x00")
        elif 2 not in methods:
            conn.sendall(b"\x05\xff")
            return
        else:
            conn.sendall(b"\x05\x02")
            _, size = _exactly(conn, 2)
            username = _exactly(conn, size).decode()
            (size,) = _exactly(conn, 1)
            password = _exactly(conn, size).decode()
            proxy.record_login((username, password))
            if (username, password) != proxy.credentials:
                conn.sendall(b"\x01\x01")
                return
            conn.sendall(b"\x01\x00")
        _, command, _, kind = _exactly(conn, 4)
        if kind == 1:
            host = str(ipaddress.IPv4Address(_exactly(conn, 4)))
        elif kind == 4:
            host = str(ipaddress.IPv6Address(_exactly(conn, 16)))
        else:
            (size,) = _exactly(conn, 1)
            host = _exactly(conn, size).decode()
        port = int.from_bytes(_exactly(conn, 2), "big")
        proxy.record(ATYP_NAMES.get(kind, str(kind)), host, port)
        if command != 1 or proxy.reply:
            conn.sendall(_reply(proxy.reply or 7))
            return
        try:
            upstream = socket.create_connection((proxy.names.get(host, host), port), timeout=30)
        except OSError:
            conn.sendall(_reply(5))
            return
        conn.sendall(_reply(0))
        _relay(conn, upstream)


class Socks5Proxy(ThreadedProxy):
    """A SOCKS5 server in a daemon thread."""

    def __init__(
        self,
        credentials: tuple[str, str] | None = None,
        host: str = "127.0.0.1",
        reply: int = 0,
        names: dict[str, str] | None = None,
    ) -> None:
        self.credentials = credentials
        self.reply = reply
        self.names = names or {}
        self.requests: list[tuple[str, str, int]] = []
        self.logins: list[tuple[str, str]] = []
        super().__init__(_Server((host, 0), _Handler))

    def url(self, login: str = "", scheme: str = "socks5") -> str:
        return f"{scheme}://{login + '@' if login else ''}{self.host}:{self.port}"

    def record(self, kind: str, host: str, port: int) -> None:
        with self._lock:
            self.requests.append((kind, host, port))

    def record_login(self, login: tuple[str, str]) -> None:
        with self._lock:
            self.logins.append(login)
