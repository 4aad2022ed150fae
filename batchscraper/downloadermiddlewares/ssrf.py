"""SSRF guard: never fetch the machine's own or its private network's addresses.

Three layers, one policy (:class:`AddressPolicy`):

- :class:`SsrfGuardMiddleware` checks every request before download — every
  redirect hop passes through it again — refusing non-http(s) schemes,
  credentials, ports outside ``BATCH_ALLOWED_PORTS``, ``localhost``-like
  names, and hosts whose addresses (IP literals in any spelling, or what DNS
  answers) are not public;
- :class:`GuardedResolver`, installed as Scrapy's DNS resolver, checks the
  address the connection will actually use, so a name that answers a public
  address to the check and a private one to the connection (DNS rebinding)
  is still refused;
- the browser's connections all go through the egress guard
  (:mod:`batchscraper.egress`), which checks each target with the same policy
  and connects to the address it checked.

``BATCH_ALLOWED_NETWORKS`` lets tests and intranet deployments reach chosen
networks (e.g. ``127.0.0.0/8``); it is empty by default.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.resolver import CachingThreadedResolver
from scrapy.settings import BaseSettings
from twisted.internet.base import ReactorBase
from twisted.internet.defer import Deferred

from batchscraper.exceptions import FetchBlockedError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[IPAddress]]

BLOCKED_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
BLOCKED_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa")
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL_PREFIX = ipaddress.ip_network("64:ff9b:1::/48")
# the non-public networks an operator opens whole (a refused address elsewhere: just itself)
NAMED_NETWORKS = tuple(ipaddress.ip_network(text) for text in (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
    "169.254.0.0/16", "::1/128", "fc00::/7", "fe80::/10",
))


@dataclass(frozen=True)
class AddressPolicy:
    """Which hosts, addresses and ports may be fetched."""

    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    allowed_ports: frozenset[int] = frozenset()

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> AddressPolicy:
        try:
            networks = tuple(
                ipaddress.ip_network(text.strip(), strict=False)
                for text in settings.getlist("BATCH_ALLOWED_NETWORKS")
                if text.strip()
            )
        except ValueError as exc:
            raise ValueError(f"BATCH_ALLOWED_NETWORKS: {exc}") from None
        ports = frozenset(int(port) for port in settings.getlist("BATCH_ALLOWED_PORTS"))
        return cls(allowed_networks=networks, allowed_ports=ports)

    def address_problem(self, address: IPAddress) -> str | None:
        """Why ``address`` must not be fetched, or None when it may."""
        candidates = [address, *embedded_ipv4(address)]
        if any(c in network for c in candidates for network in self.allowed_networks):
            return None
        for candidate in candidates:
            if candidate.is_multicast or not candidate.is_global:
                return f"address {candidate} is not public; {how_to_allow(candidate)}"
        return None

    def check_url(self, url: str) -> tuple[str, int]:
        """Check everything but DNS; return (host, port) or raise :class:`FetchBlockedError`."""
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise FetchBlockedError(f"malformed URL: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise FetchBlockedError(f"scheme {parts.scheme!r} is not fetched")
        if parts.username is not None or parts.password is not None:
            raise FetchBlockedError("credentials in URLs are not accepted")
        return self.check_target(parts.hostname or "", port), port

    def check_target(self, host: str, port: int) -> str:
        """Check a host and port (no DNS but for local names); return the normalised host."""
        if self.allowed_ports and port not in self.allowed_ports:
            raise FetchBlockedError(f"port {port} is not in BATCH_ALLOWED_PORTS")
        host = normalised_host(host)
        if not host:
            raise FetchBlockedError("URL has no host")
        literal = parse_ip_literal(host)
        if literal is not None:
            self.check_addresses([literal])
        elif is_local_name(host) and not self._name_allowed(host):
            raise FetchBlockedError(f"host {host!r} is a local name")
        return host

    def addresses_to_connect(
        self, host: str, port: int, resolver: Resolver | None = None
    ) -> list[IPAddress]:
        """The addresses of a checked ``host`` (blocking DNS), every one allowed.

        The connection must go to one of these, never to a second DNS answer
        (rebinding). ``FetchBlockedError`` when one is not allowed; ``OSError``
        when the name does not resolve.
        """
        literal = parse_ip_literal(host)
        addresses = [literal] if literal is not None else (resolver or resolve)(host, port)
        self.check_addresses(addresses)
        return addresses

    def check_addresses(self, addresses: Iterable[IPAddress]) -> None:
        for address in addresses:
            problem = self.address_problem(address)
            if problem:
                raise FetchBlockedError(problem)

    def _name_allowed(self, host: str) -> bool:
        """A local name is allowed only when all it resolves to is in an allowed network."""
        if not self.allowed_networks:
            return False
        try:
            return all(self.address_problem(a) is None for a in resolve(host, 0))
        except OSError:
            return False


def how_to_allow(address: IPAddress) -> str:
    """How an operator opens the network of a refused ``address``, where each part is set."""
    network = next((str(n) for n in NAMED_NETWORKS if address in n),
                   str(ipaddress.ip_network(address)))
    return (f"to fetch it, allow its network: -s BATCH_ALLOWED_NETWORKS={network} for scrapy"
            f" crawl; in scrapyd.conf [batchscraper], batch_api_job_settings ="
            f' {{"BATCH_ALLOWED_NETWORKS": "{network}"}} for API batches and'
            f" batch_allowed_networks = {network} for webhooks")


def normalised_host(host: str) -> str:
    """A host as the checks compare it: lower case, no trailing dot, no IPv6 brackets."""
    return host.strip("[]").rstrip(".").lower()


def is_local_name(host: str) -> bool:
    return host in BLOCKED_NAMES or host.endswith(BLOCKED_SUFFIXES)


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a host string means, in every spelling a resolver would accept.

    Covers dotted quads, ``2130706433`` (decimal), ``0x7f.1`` (hex, short
    forms), ``0177.0.0.1`` (octal) and bracketed or bare IPv6.
    """
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    if all(part and _is_number(part) for part in host.split(".")):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _is_number(part: str) -> bool:
    text = part.lower()
    if text.startswith("0x"):
        return all(ch in "0123456789abcdef" for ch in text[2:])
    return text.isdigit()


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses carried inside an IPv6 one (mapped, 6to4, Teredo, NAT64, compatible)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address.teredo:
        found.extend(address.teredo)
    if address in NAT64_PREFIX or address in NAT64_LOCAL_PREFIX:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if int(address) >> 32 == 0 and int(address) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        found.append(ipaddress.IPv4Address(int(address)))
    return found


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (blocking)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


#: how long a host name's check holds (Scrapy's DNS cache holds answers as long); the
#: connection itself is checked again by :class:`GuardedResolver`
NAME_CHECK_SECONDS = 60.0
NAME_CHECK_MEMORY = 10_000


class SsrfGuardMiddleware:
    """Downloader middleware: refuse requests to non-public targets with FETCH_BLOCKED.

    An IP literal is checked without DNS; a name is resolved off the reactor
    thread once per ``NAME_CHECK_SECONDS`` (not once per page of its site).
    """

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        # (host, port) -> (monotonic expiry, the problem or None)
        self._names: dict[tuple[str, int], tuple[float, str | None]] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> SsrfGuardMiddleware:
        if not crawler.settings.getbool("BATCH_SSRF_GUARD_ENABLED"):
            raise NotConfigured
        return cls(AddressPolicy.from_settings(crawler.settings))

    async def process_request(self, request: Request) -> None:
        host, port = self.policy.check_url(request.url)
        if parse_ip_literal(host) is not None:  # check_url checked the address itself
            return
        problem = await self._name_problem(host, port)
        if problem is not None:
            raise FetchBlockedError(problem)

    async def _name_problem(self, host: str, port: int) -> str | None:
        now = time.monotonic()
        known = self._names.get((host, port))
        if known is not None and known[0] > now:
            return known[1]
        try:
            await asyncio.to_thread(self.policy.addresses_to_connect, host, port)
            problem = None
        except FetchBlockedError as exc:
            problem = str(exc)
        except OSError:  # a name that does not resolve: DNS_ERROR later, asked again next time
            return None
        if len(self._names) >= NAME_CHECK_MEMORY:
            self._names.clear()
        self._names[(host, port)] = (now + NAME_CHECK_SECONDS, problem)
        return problem


ALLOW_ALL = AddressPolicy(
    allowed_networks=(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
)


def guard_policy(settings: BaseSettings) -> AddressPolicy:
    """The policy of a crawl or of the API (webhooks): ``BATCH_ALLOWED_NETWORKS`` and
    ``BATCH_ALLOWED_PORTS``, or every address when ``BATCH_SSRF_GUARD_ENABLED`` is off."""
    if not settings.getbool("BATCH_SSRF_GUARD_ENABLED"):
        return ALLOW_ALL
    return AddressPolicy.from_settings(settings)

# names the resolver refused, so the failed download is reported as FETCH_BLOCKED
blocked_by_resolver: dict[str, str] = {}
BLOCKED_MEMORY = 10_000


class GuardedResolver(CachingThreadedResolver):
    """Scrapy's caching resolver, refusing names whose address is not allowed.

    This is the address the connection uses, so the check cannot be raced
    by a second DNS answer.
    """

    policy: AddressPolicy
    trusted_names: frozenset[str] = frozenset()  # the operator's proxies (BATCH_PROXIES)

    @classmethod
    def from_crawler(cls, crawler: Crawler, reactor: ReactorBase) -> GuardedResolver:
        resolver = super().from_crawler(crawler, reactor)
        resolver.policy = guard_policy(crawler.settings)
        resolver.trusted_names = frozenset(
            normalised_host(urlsplit(url).hostname or "")
            for url in crawler.settings.getlist("BATCH_PROXIES")
        )
        return resolver

    def getHostByName(self, name: str, timeout: Sequence[int] = ()) -> Deferred[str]:
        return super().getHostByName(name, timeout).addCallback(self._checked, name)

    def _checked(self, address: str, name: str) -> str:
        if normalised_host(name) in self.trusted_names:
            return address
        problem = self.policy.address_problem(ipaddress.ip_address(address))
        if problem:
            if len(blocked_by_resolver) >= BLOCKED_MEMORY:
                blocked_by_resolver.clear()
            blocked_by_resolver[name] = problem
            raise FetchBlockedError(problem)
        return address
