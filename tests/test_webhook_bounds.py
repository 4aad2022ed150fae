"""Webhook answers are read within bounds: a receiver cannot grow Scrapyd or hold a delivery.

Both receivers answer 200 and never end their body: one as fast as loopback
allows, one a byte at a time. The session's real Scrapyd delivers to them.
"""

from __future__ import annotations

import re
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from batchscraper.inputs import parse_batch
from batchscraper.store import BatchStore
from batchscraper.webhooks import new_secret
from tests.api_fixtures import (  # noqa: F401  (fixtures)
    API_SETTINGS,
    ScrapydServer,
    scrapyd_fixture,
    wait_for,
)

pytestmark = pytest.mark.slow

FIELDS = [{"field": "name", "type": "string"}]
WEBHOOK_TIMEOUT = float(API_SETTINGS["batch_webhook_timeout"])
SEND_LIMIT = 64 * 1024 * 1024  # the receiver's own end, so the old unbounded read fails fast
GIVE_UP = 20.0  # seconds the receiver sends to a client that never closes
SENT_BOUND = 10 * 1024 * 1024  # far above the 64 KB cap plus what the socket buffers hold
RSS_BOUND = 32 * 1024 * 1024
CHUNK = 64 * 1024
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"  # no length: ends at close


@dataclass
class Exchange:
    """What one connection to the receiver saw."""

    sent: int = 0
    seconds: float = 0.0
    closed_by_client: bool = False


@dataclass
class EndlessReceiver:
    """Answers 200, then sends ``chunk`` every ``interval`` s until the client closes."""

    chunk: bytes
    interval: float
    exchanges: list[Exchange] = field(default_factory=list)
    listener: socket.socket = field(default_factory=socket.socket)
    stopping: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"

    def start(self) -> EndlessReceiver:
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.listener.settimeout(0.1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting; returns once the current exchange is over and recorded."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(GIVE_UP + 5)
        self.listener.close()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(GIVE_UP)
                _read_request(conn)
                self.exchanges.append(self._answer(conn))

    def _answer(self, conn: socket.socket) -> Exchange:
        exchange = Exchange()
        started = time.monotonic()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CHUNK)  # little held in flight
        try:
            conn.sendall(HEAD)
            while exchange.sent < SEND_LIMIT and time.monotonic() - started < GIVE_UP:
                conn.sendall(self.chunk)
                exchange.sent += len(self.chunk)
                if _closed(conn, self.interval):
                    exchange.closed_by_client = True
                    break
        except TimeoutError:
            pass  # a client that stopped reading without closing
        except OSError:
            exchange.closed_by_client = True  # reset or broken pipe
        exchange.seconds = time.monotonic() - started
        return exchange


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(CHUNK)
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE)
    length = int(match.group(1)) if match else 0
    while len(body) < length:
        body += conn.recv(CHUNK)


def _closed(conn: socket.socket, wait: float) -> bool:
    """True when the client closed its end within ``wait`` s (it sends nothing more)."""
    readable, _, _ = select.select([conn], [], [], wait)
    if not readable:
        return False
    try:
        return conn.recv(1) == b""
    except OSError:
        return True


def _rss(server: ScrapydServer) -> int:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    match = re.search(r"VmRSS:\s*(\d+) kB", status)
    assert match, status
    return int(match.group(1)) * 1024


def _first_attempt(store: BatchStore, receiver: EndlessReceiver) -> dict[str, Any]:
    """The first delivery attempt of a batch.completed event aimed at ``receiver``."""
    spec = parse_batch(["https://example.com/1"], FIELDS)
    webhook = {"url": receiver.url, "secret": new_secret(), "deliveries": []}
    batch_id = store.create_batch(spec, extra={"webhook": webhook})["_id"]
    store.cancel_batch(batch_id)  # a final status: the event is in the outbox
    deliveries = wait_for(lambda: store.get_batch(batch_id)["webhook"]["deliveries"],
                          timeout=30, what="a delivery attempt")
    return dict(deliveries[0])


@pytest.mark.timeout(90)
def test_an_endless_answer_is_cut_after_the_cap_and_counts_as_delivered(
    scrapyd: ScrapydServer, store: BatchStore
) -> None:
    receiver = EndlessReceiver(b"x" * CHUNK, interval=0).start()
    before = _rss(scrapyd)
    try:
        attempt = _first_attempt(store, receiver)
    finally:
        receiver.stop()
    grown = _rss(scrapyd) - before
    exchange = receiver.exchanges[0]
    assert exchange.closed_by_client, exchange
    assert exchange.sent < SENT_BOUND, exchange
    assert (attempt["ok"], attempt["status_code"], attempt.get("truncated")) == (True, 200, True)
    assert grown < RSS_BOUND, f"Scrapyd grew by {grown} bytes"


@pytest.mark.timeout(90)
def test_a_trickling_answer_ends_at_the_timeout_and_counts_as_delivered(
    scrapyd: ScrapydServer, store: BatchStore
) -> None:
    receiver = EndlessReceiver(b"x", interval=0.2).start()
    try:
        attempt = _first_attempt(store, receiver)
    finally:
        receiver.stop()
    exchange = receiver.exchanges[0]
    assert exchange.closed_by_client, exchange
    assert exchange.seconds < WEBHOOK_TIMEOUT + 1, exchange
    assert attempt["duration_ms"] < (WEBHOOK_TIMEOUT + 1) * 1000, attempt
    assert (attempt["ok"], attempt["status_code"], attempt.get("truncated")) == (True, 200, True)
