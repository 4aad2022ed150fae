"""The egress guard as a component: a proxy client (no browser) against loopback hosts."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections.abc import Iterator

import pytest

from batchscraper.downloadermiddlewares.ssrf import AddressPolicy, IPAddress
from batchscraper.egress import EgressGuard
from batchscraper.egress_http import BLOCKED_HEADER
from tests.egress_sites import PUBLIC_ADDRESS, CountingServer, attack_hosts

POLICY = AddressPolicy(allowed_networks=(ipaddress.ip_network(f"{PUBLIC_ADDRESS}/32"),))


@pytest.fixture(scope="module")
def hosts() -> Iterator[tuple[CountingServer, CountingServer]]:
    with attack_hosts() as pair:
        yield pair


def start_guard(resolve) -> EgressGuard:
    guard = EgressGuard(POLICY, resolve, connect_timeout=5)
    guard.start()
    return guard


def exchange(guard: EgressGuard, head: str) -> bytes:
    """Send one request head to the guard; everything it answers until it closes."""
    with socket.create_connection(("127.0.0.1", guard.port), timeout=10) as conn:
        conn.sendall(head.encode())
        answer = b""
        while data := conn.recv(65536):
            answer += data
    return answer


def test_plain_http_is_relayed_to_the_checked_address_with_connection_close(hosts):
    public, _ = hosts
    port = public.server_address[1]
    guard = start_guard(lambda host, port: [])
    try:
        answer = exchange(
            guard, f"GET http://{PUBLIC_ADDRESS}:{port}/p/harmless HTTP/1.1\r\n"
            f"Host: {PUBLIC_ADDRESS}:{port}\r\nProxy-Connection: keep-alive\r\n\r\n"
        )
    finally:
        guard.stop()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head
    assert b"Connection: close" in head  # the browser must not reuse it for another host
    assert b"A public product" in body
    assert guard.refusals_since(0) == []
    assert guard.connections == 1


@pytest.mark.parametrize(
    "request_line",
    [
        "GET http://127.0.0.1:{canary}/secret HTTP/1.1",
        "CONNECT 127.0.0.1:{canary} HTTP/1.1",
        "GET http://localhost:{canary}/secret HTTP/1.1",
        "GET http://2130706433:{canary}/secret HTTP/1.1",
        "CONNECT [::ffff:127.0.0.1]:{canary} HTTP/1.1",
        "GET ftp://127.0.0.2:{canary}/ HTTP/1.1",
    ],
)
def test_targets_the_policy_refuses_get_403_and_nothing_is_sent(hosts, request_line):
    _, canary = hosts
    before = canary.accepted
    guard = start_guard(lambda host, port: [ipaddress.ip_address("127.0.0.1")])
    try:
        line = request_line.format(canary=canary.server_address[1])
        answer = exchange(guard, f"{line}\r\nHost: x\r\n\r\n")
    finally:
        guard.stop()
    assert answer.split(b"\r\n", 1)[0] in (b"HTTP/1.1 403 Refused", b"HTTP/1.1 400 Refused")
    assert BLOCKED_HEADER.encode() in answer
    assert canary.accepted == before
    assert guard.connections == 0


def test_a_rebinding_name_is_resolved_once_and_the_checked_address_is_used(hosts):
    """The attacker's DNS answers public, then internal: each connection uses what it checked."""
    public, canary = hosts
    port = public.server_address[1]
    answers: list[IPAddress] = []

    def rebinding(host: str, _port: int) -> list[IPAddress]:
        answer = ipaddress.ip_address(PUBLIC_ADDRESS if len(answers) % 2 == 0 else "127.0.0.1")
        answers.append(answer)
        return [answer]

    guard = start_guard(rebinding)
    before_public, before_canary = public.accepted, canary.accepted
    try:
        statuses = [
            exchange(guard, f"GET http://rebind.test:{port}/data HTTP/1.1\r\n\r\n")[:12]
            for _ in range(4)
        ]
    finally:
        guard.stop()
    assert len(answers) == 4  # one resolution per connection, never a second one to connect
    assert statuses == [b"HTTP/1.0 200", b"HTTP/1.1 403", b"HTTP/1.0 200", b"HTTP/1.1 403"]
    assert public.accepted - before_public == 2
    assert canary.accepted == before_canary
    refusals = guard.refusals_since(0)
    assert [(r.kind, r.host, r.port) for r in refusals] == [("blocked", "rebind.test", port)] * 2
    assert "127.0.0.1 is not public" in refusals[0].reason


def test_the_refusal_log_is_read_from_a_mark(hosts):
    _, canary = hosts
    guard = start_guard(lambda host, port: [])
    try:
        exchange(guard, f"CONNECT 127.0.0.1:{canary.server_address[1]} HTTP/1.1\r\n\r\n")
        mark = guard.mark()
        exchange(guard, "CONNECT 10.1.2.3:443 HTTP/1.1\r\n\r\n")
        later = guard.refusals_since(mark)
    finally:
        guard.stop()
    assert [(r.host, r.port) for r in later] == [("10.1.2.3", 443)]
    assert len(guard.refusals_since(0)) == 2


class CannedOrigin:
    """An origin on 127.0.0.2 that answers every connection with the same bytes."""

    def __init__(self, answer: bytes) -> None:
        self.listener = socket.create_server((PUBLIC_ADDRESS, 0))
        self.port = self.listener.getsockname()[1]
        self.answer = answer
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(self.answer)

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize(
    "answer,expected_head",
    [
        (  # an interim answer first: the final one is still told to close
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n",
        ),
        (  # a bare LF could hide a second Connection header from the guard
            b"HTTP/1.1 200 OK\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 502 Refused\r\n",
        ),
        (  # so could a folded header line
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\n Connection: keep-alive\r\n\r\nok",
            b"HTTP/1.1 502 Refused\r\n",
        ),
    ],
)
def test_the_origin_cannot_keep_the_browser_connection_open(answer: bytes, expected_head: bytes):
    origin = CannedOrigin(answer)
    guard = start_guard(lambda host, port: [])
    try:
        reply = exchange(
            guard, f"GET http://{PUBLIC_ADDRESS}:{origin.port}/ HTTP/1.1\r\nHost: x\r\n\r\n"
        )
    finally:
        guard.stop()
        origin.close()
    final = reply.split(b"\r\n\r\n", 1)[1] if reply.startswith(b"HTTP/1.1 100") else reply
    assert final.startswith(expected_head), reply
    assert b"keep-alive" not in final.split(b"\r\n\r\n", 1)[0]


def test_a_guard_that_cannot_listen_is_not_running_and_stops_at_once(monkeypatch):
    async def refuse(*args, **kwargs):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr("batchscraper.egress.asyncio.start_server", refuse)
    guard = EgressGuard(POLICY, lambda host, port: [], connect_timeout=5)
    with pytest.raises(OSError):
        guard.start()
    assert not guard.running
    guard.stop()  # returns: nothing to wait for
