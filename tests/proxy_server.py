"""A small real forward proxy on 127.0.0.1 for the tests: it counts what passes through it.

``CountingProxy()`` forwards absolute-form requests (``GET http://host/path``) and
tunnels ``CONNECT``; with ``credentials=("user", "password")`` it answers 407 to a
request without that Basic login; with ``refuse=True`` it answers 407 to everything.
``host`` is the loopback address it listens on (127.0.0.1 unless given); with ``tls`` (a
server context) it is an ``https://`` proxy.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import socketserver
import ssl
import threading
from typing import Any, Self
from urllib.parse import urlsplit

HEAD_LIMIT = 64 * 1024
REFUSAL = (b"HTTP/1.1 407 Proxy Authentication Required\r\n"
           b"Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n"
           b"Connection: close\r\n\r\n")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: CountingProxy

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        if self.proxy.tls is not None:  # the handshake happens in the handler's thread
            conn = self.proxy.tls.wrap_socket(conn, server_side=True,
                                              do_handshake_on_connect=False)
        return conn, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (e.g. did not trust the TLS certificate): nothing to print."""


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < HEAD_LIMIT:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        proxy = self.server.proxy
        proxy.record(method, target, headers.get("Proxy-Authorization"))
        if proxy.refuse or not proxy.authorized(headers.get("Proxy-Authorization")):
            self.request.sendall(REFUSAL)
            return
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)), timeout=30)
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            upstream.sendall(rest)
        else:
            parts = urlsplit(target)
            upstream = socket.create_connection((parts.hostname, parts.port or 80), timeout=30)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            kept = [f"{name}: {value}" for name, value in headers.items()
                    if name.lower() not in ("proxy-authorization", "proxy-connection",
                                            "connection")]
            request = (f"{method} {path or '/'} HTTP/1.1\r\n"
                       + "".join(f"{line}\r\n" for line in kept) + "Connection: close\r\n\r\n")
            upstream.sendall(request.encode("latin-1") + rest)
            _pump(upstream, self.request)  # one request per connection: the answer, then close
            upstream.close()
            return
        _relay(self.request, upstream)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join(timeout=60)
    upstream.close()


class ThreadedProxy:
    """A proxy server in daemon threads on ``host`` (a free port), for a ``with`` block."""

    def __init__(self, server: socketserver.ThreadingTCPServer) -> None:
        self._lock = threading.Lock()
        self._server = server
        self._server.proxy = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()


class CountingProxy(ThreadedProxy):
    """A forward proxy in a daemon thread; ``requests`` lists (method, target) it saw."""

    def __init__(
        self,
        credentials: tuple[str, str] | None = None,
        refuse: bool = False,
        host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.credentials = credentials
        self.tls = tls
        self.refuse = refuse
        self.requests: list[tuple[str, str]] = []
        self.logins: list[str | None] = []
        super().__init__(_Server((host, 0), _Handler))

    def url(self, login: str = "") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{login + '@' if login else ''}{self.host}:{self.port}"

    def record(self, method: str, target: str, login: str | None) -> None:
        with self._lock:
            self.requests.append((method, target))
            self.logins.append(login)

    def authorized(self, header: str | None) -> bool:
        if self.credentials is None:
            return True
        expected = base64.b64encode(":".join(self.credentials).encode()).decode()
        return header == f"Basic {expected}"



def closed_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` nothing listens on (connection refused)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


