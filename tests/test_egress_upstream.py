"""The egress guard chained to a proxy (guard -> user proxy), as a component: a proxy client
(no browser) against real proxies on loopback that count what reaches them.

Only 127.0.0.2 is allowed, as in tests/test_egress.py: the public site and the
user's proxies live there, the canary on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from collections.abc import Iterator

import pytest

from batchscraper.downloadermiddlewares.ssrf import AddressPolicy, IPAddress, resolve
from batchscraper.egress import EgressGuard
from batchscraper.egress_http import BLOCKED_HEADER
from batchscraper.egress_routes import Route
from batchscraper.proxies import parse_proxy
from tests.egress_sites import PUBLIC_ADDRESS, CountingServer, attack_hosts
from tests.proxy_server import CountingProxy, closed_port
from tests.socks_server import Socks5Proxy
from tests.tls_certs import self_signed, server_context

POLICY = AddressPolicy(allowed_networks=(ipaddress.ip_network(f"{PUBLIC_ADDRESS}/32"),))
PASSWORD = "up-pw-3c9e10aa"  # must never appear in a refusal
PUBLIC_NAME_HOST = "shop.test"  # resolves to the public address, for this guard and the proxy


def resolver(host: str, port: int) -> list[IPAddress]:
    if host == PUBLIC_NAME_HOST:
        return [ipaddress.ip_address(PUBLIC_ADDRESS)]
    return resolve(host, port)


@pytest.fixture(scope="module")
def hosts() -> Iterator[tuple[CountingServer, CountingServer]]:
    with attack_hosts() as pair:
        yield pair


@pytest.fixture()
def guard() -> Iterator[EgressGuard]:
    running = EgressGuard(POLICY, resolver, connect_timeout=5)
    running.start()
    yield running
    running.stop()


def route_to(guard: EgressGuard, proxy_url: str, trusted: bool = False) -> Route:
    return asyncio.run(guard.route(parse_proxy(proxy_url), trusted))


def exchange(route: Route, head: str, then: str = "") -> bytes:
    """Send a request head to a route (and, once a tunnel answers 200, ``then``); all the
    answer until the connection closes."""
    with socket.create_connection(("127.0.0.1", route.port), timeout=10) as conn:
        conn.sendall(head.encode())
        answer = b""
        while data := conn.recv(65536):
            answer += data
            if then and answer.startswith(b"HTTP/1.1 200 Connection Established\r\n\r\n"):
                conn.sendall(then.encode())
                then = ""
    return answer


def get(host: str, port: int, path: str) -> str:
    return f"GET http://{host}:{port}{path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"


def inner_get(path: str) -> str:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def test_a_route_through_an_http_proxy_sends_the_checked_target_with_the_login(guard, hosts):
    public, canary = hosts
    port = public.server_address[1]
    with CountingProxy(credentials=("user", PASSWORD), host=PUBLIC_ADDRESS) as proxy:
        route = route_to(guard, proxy.url(f"user:{PASSWORD}"))
        assert route_to(guard, proxy.url(f"user:{PASSWORD}")) == route  # one listener each
        plain = exchange(route, get(PUBLIC_ADDRESS, port, "/p/harmless"))
        tunnelled = exchange(route, f"CONNECT {PUBLIC_ADDRESS}:{port} HTTP/1.1\r\n\r\n",
                             then=inner_get("/p/harmless"))
        before = canary.accepted
        refused = exchange(route, f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n")
        refused_plain = exchange(route, get("127.0.0.1", port, "/secret"))
    assert plain.startswith(b"HTTP/1.0 200") and b"A public product" in plain
    assert b"Connection: close" in plain.split(b"\r\n\r\n")[0]
    assert b"A public product" in tunnelled
    # the proxy saw the two allowed requests, logged in; never the canary
    assert proxy.requests == [("GET", f"http://{PUBLIC_ADDRESS}:{port}/p/harmless"),
                              ("CONNECT", f"{PUBLIC_ADDRESS}:{port}")]
    login = "Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode()
    assert proxy.logins == [login, login]
    for answer in (refused, refused_plain):
        assert answer.startswith(b"HTTP/1.1 403 Refused") and BLOCKED_HEADER.encode() in answer
    assert canary.accepted == before
    assert [(r.kind, r.host, r.route) for r in guard.refusals_since(0)] == [
        ("blocked", "127.0.0.1", route.number)] * 2


@pytest.mark.parametrize("refusing", ["407", "dead"])
def test_a_failing_http_proxy_is_reported_as_the_proxys_failure(guard, hosts, refusing):
    public, _ = hosts
    port = public.server_address[1]
    with CountingProxy(refuse=True, host=PUBLIC_ADDRESS) as proxy:
        address = proxy.port if refusing == "407" else closed_port(PUBLIC_ADDRESS)
        route = route_to(guard, f"http://user:{PASSWORD}@{PUBLIC_ADDRESS}:{address}")
        answers = [exchange(route, get(PUBLIC_ADDRESS, port, "/p/harmless")),
                   exchange(route, f"CONNECT {PUBLIC_ADDRESS}:{port} HTTP/1.1\r\n\r\n")]
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 502 Refused"), answer
        assert PASSWORD.encode() not in answer
    refusals = guard.refusals_since(0)
    assert [(r.kind, r.route, r.port) for r in refusals] == [("proxy", route.number, port)] * 2
    expected = "407 Proxy Authentication Required" if refusing == "407" else "cannot connect"
    assert all(expected in r.reason and PASSWORD not in r.reason for r in refusals), refusals
    assert f"http://***:***@{PUBLIC_ADDRESS}" in refusals[0].reason
    assert guard.refusal_for(route.number, PUBLIC_ADDRESS, port, 0) == refusals[-1]


@pytest.mark.parametrize(("scheme", "sent"), [("socks5", ("ipv4", PUBLIC_ADDRESS)),
                                              ("socks5h", ("name", PUBLIC_NAME_HOST))])
def test_a_socks5_route_logs_in_and_sends_the_checked_address_or_the_name(
    guard, hosts, scheme, sent
):
    public, canary = hosts
    port = public.server_address[1]
    names = {PUBLIC_NAME_HOST: PUBLIC_ADDRESS}
    with Socks5Proxy(credentials=("user", PASSWORD), host=PUBLIC_ADDRESS, names=names) as proxy:
        route = route_to(guard, proxy.url(f"user:{PASSWORD}", scheme))
        plain = exchange(route, get(PUBLIC_NAME_HOST, port, "/p/harmless"))
        tunnelled = exchange(route, f"CONNECT {PUBLIC_NAME_HOST}:{port} HTTP/1.1\r\n\r\n",
                             then=inner_get("/p/harmless"))
        before = canary.accepted
        refused = exchange(route, f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n")
    assert b"A public product" in plain and b"A public product" in tunnelled
    assert proxy.requests == [(*sent, port)] * 2
    assert proxy.logins == [("user", PASSWORD)] * 2
    assert refused.startswith(b"HTTP/1.1 403") and canary.accepted == before


def test_socks5_failures_the_proxys_own_and_the_targets(guard, hosts):
    public, _ = hosts
    port = public.server_address[1]
    target = f"CONNECT {PUBLIC_ADDRESS}:{port} HTTP/1.1\r\n\r\n"
    with Socks5Proxy(credentials=("user", "right"), host=PUBLIC_ADDRESS) as wrong_login, \
            Socks5Proxy(host=PUBLIC_ADDRESS, reply=5) as target_refused, \
            Socks5Proxy(host=PUBLIC_ADDRESS, reply=1) as broken:
        for proxy in (wrong_login, target_refused, broken):
            login = f"user:{PASSWORD}" if proxy is wrong_login else ""
            answer = exchange(route_to(guard, proxy.url(login)), target)
            assert answer.startswith(b"HTTP/1.1 502 Refused"), answer
        no_login = exchange(route_to(guard, wrong_login.url()), target)
    assert no_login.startswith(b"HTTP/1.1 502")
    reasons = [(r.kind, r.reason) for r in guard.refusals_since(0)]
    # the target's refusal (reply 5) is no failure of the proxy: it is not logged
    assert [kind for kind, _ in reasons] == ["proxy"] * 3
    assert "refused the login" in reasons[0][1] and PASSWORD not in reasons[0][1]
    assert "general SOCKS server failure" in reasons[1][1]
    assert "accepts none of the offered login methods" in reasons[2][1]


def test_a_users_proxy_at_a_refused_address_is_refused_the_operators_is_trusted(guard, hosts):
    public, _ = hosts
    port = public.server_address[1]
    with CountingProxy() as internal:  # on 127.0.0.1: not an address the policy allows
        user = exchange(route_to(guard, internal.url()), get(PUBLIC_ADDRESS, port, "/p/x"))
        assert internal.requests == []
        operator = exchange(route_to(guard, internal.url(), trusted=True),
                            get(PUBLIC_ADDRESS, port, "/p/x"))
    assert user.startswith(b"HTTP/1.1 403 Refused")
    [refusal] = guard.refusals_since(0)
    assert (refusal.kind, refusal.host) == ("blocked", PUBLIC_ADDRESS)
    assert f"proxy {internal.url()}" in refusal.reason and "not public" in refusal.reason
    assert b"A public product" in operator
    assert internal.requests == [("GET", f"http://{PUBLIC_ADDRESS}:{port}/p/x")]


@pytest.mark.parametrize("trusted_certificate", [True, False])
def test_an_https_proxy_is_spoken_to_over_tls_with_its_certificate_checked(
    hosts, tmp_path, monkeypatch, trusted_certificate
):
    public, _ = hosts
    port = public.server_address[1]
    certificate = self_signed(PUBLIC_ADDRESS, tmp_path)
    if trusted_certificate:  # the system's CAs, as OpenSSL reads them, plus the test's
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate))
    guard = EgressGuard(POLICY, resolver, connect_timeout=5)
    guard.start()
    try:
        with CountingProxy(credentials=("user", PASSWORD), host=PUBLIC_ADDRESS,
                           tls=server_context(certificate)) as proxy:
            route = route_to(guard, proxy.url(f"user:{PASSWORD}"))
            plain = exchange(route, get(PUBLIC_ADDRESS, port, "/p/harmless"))
            tunnelled = exchange(route, f"CONNECT {PUBLIC_ADDRESS}:{port} HTTP/1.1\r\n\r\n",
                                 then=inner_get("/p/harmless"))
    finally:
        guard.stop()
    if trusted_certificate:
        assert b"A public product" in plain and b"A public product" in tunnelled
        assert [method for method, _ in proxy.requests] == ["GET", "CONNECT"]
        assert guard.refusals_since(0) == []
    else:
        assert plain.startswith(b"HTTP/1.1 502") and tunnelled.startswith(b"HTTP/1.1 502")
        assert proxy.requests == []  # nothing was sent to a proxy not proven to be it
        refusals = guard.refusals_since(0)
        assert [r.kind for r in refusals] == ["proxy", "proxy"]
        assert "CERTIFICATE_VERIFY_FAILED" in refusals[0].reason, refusals[0].reason


def test_routes_nobody_holds_are_closed_beyond_the_bound_the_held_ones_never(hosts):
    """A listener per proxy in use, not per proxy ever used (a session per URL is common)."""
    public, _ = hosts
    port = public.server_address[1]
    guard = EgressGuard(POLICY, resolver, connect_timeout=5, max_routes=3)  # direct + 2
    guard.start()
    try:
        with CountingProxy(host=PUBLIC_ADDRESS) as proxy:
            sessions = [f"http://session-{n}:pw@{PUBLIC_ADDRESS}:{proxy.port}" for n in range(3)]
            first, second = route_to(guard, sessions[0]), route_to(guard, sessions[1])
            guard.release(first)  # its request is over; the second's is not
            third = route_to(guard, sessions[2])  # no room: the first one closes
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", first.port), timeout=5).close()
            for held in (second, third):
                assert b"A public product" in exchange(held, get(PUBLIC_ADDRESS, port, "/p/a"))
            again = route_to(guard, sessions[0])  # reopened, as a new route
            assert (again.number, again.upstream) == (4, first.upstream) and again != first
            assert b"A public product" in exchange(again, get(PUBLIC_ADDRESS, port, "/p/a"))
    finally:
        guard.stop()
    assert len(proxy.requests) == 3
