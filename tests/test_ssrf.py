"""SSRF guard: private, loopback and odd spellings of them are never fetched."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from scrapy import Request
from scrapy.settings import Settings

from batchscraper.demo.site import ExampleSite
from batchscraper.downloadermiddlewares.ssrf import (
    AddressPolicy,
    FetchBlockedError,
    GuardedResolver,
    IPAddress,
    SsrfGuardMiddleware,
    blocked_by_resolver,
    parse_ip_literal,
)
from batchscraper.store import BatchStore
from tests.conftest import REPO, batch_id_from

BLOCKED = [
    "http://127.0.0.1/",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://017700000001/",
    "http://0.0.0.0/",
    "http://[::1]/",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",  # Teredo carrying 127.0.0.1
    "http://[::127.0.0.1]/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://[fc00::1]/",
    "http://[fe80::1]/",
    "http://[ff02::1]/",
    "http://localhost/",
    "http://LOCALHOST./",
    "http://app.localhost/",
    "http://printer.local/",
    "http://metadata.google.internal/",
    "http://user:pw@93.184.215.14/",
    "ftp://93.184.215.14/",
    "file:///etc/passwd",
]


@pytest.mark.parametrize("url", BLOCKED)
def test_non_public_targets_are_refused(url: str):
    with pytest.raises(FetchBlockedError):
        AddressPolicy().check_url(url)


@pytest.mark.parametrize(
    "url", ["http://93.184.215.14/", "https://[2606:4700::1111]/x", "http://8.8.8.8:8080/"]
)
def test_public_targets_pass(url: str):
    AddressPolicy().check_url(url)


def test_ip_spellings_parse_like_a_resolver():
    assert str(parse_ip_literal("2130706433")) == "127.0.0.1"
    assert str(parse_ip_literal("0x7f.1")) == "127.0.0.1"
    assert str(parse_ip_literal("0177.0.0.1")) == "127.0.0.1"
    assert parse_ip_literal("example.com") is None
    assert parse_ip_literal("1.example") is None


def test_allow_list_and_ports():
    settings = Settings(
        {"BATCH_ALLOWED_NETWORKS": ["127.0.0.0/8"], "BATCH_ALLOWED_PORTS": [80, 443]}
    )
    policy = AddressPolicy.from_settings(settings)
    policy.check_url("http://127.0.0.1/")
    policy.check_url("http://[::ffff:127.0.0.1]/")
    with pytest.raises(FetchBlockedError, match="not public"):
        policy.check_url("http://10.0.0.1/")
    with pytest.raises(FetchBlockedError, match="BATCH_ALLOWED_PORTS"):
        policy.check_url("http://93.184.215.14:8080/")


class CountingPolicy(AddressPolicy):
    """A policy whose DNS answers come from ``answers`` (host -> address), counted."""

    def __init__(self, answers: dict[str, str]) -> None:
        super().__init__()
        self.answers = answers
        self.lookups: list[str] = []

    def addresses_to_connect(self, host: str, port: int, resolver: object = None,
                             ) -> list[IPAddress]:
        self.lookups.append(host)
        if host not in self.answers:
            raise OSError("no such name")
        return super().addresses_to_connect(host, port, lambda *_: [
            parse_ip_literal(self.answers[host])])


def test_the_middleware_resolves_a_name_once_and_not_a_literal():
    policy = CountingPolicy({"shop.example": "93.184.215.14", "inside.example": "10.0.0.7"})
    middleware = SsrfGuardMiddleware(policy)

    async def fetch(url: str) -> str | None:
        try:
            await middleware.process_request(Request(url))
        except FetchBlockedError as exc:
            return str(exc)
        return None

    async def main() -> list[str | None]:
        urls = [f"http://shop.example/p/{n}" for n in range(5)]
        urls += ["http://93.184.215.14/a", "http://10.0.0.8/b"]
        urls += ["http://inside.example/1", "http://inside.example/2"]
        urls += ["http://gone.example/1", "http://gone.example/2"]
        return [await fetch(url) for url in urls]

    problems = asyncio.run(main())
    assert problems[:6] == [None] * 6  # the public name and the public literal pass
    assert problems[6] and "10.0.0.8" in problems[6]  # a literal is checked without DNS
    assert problems[7] == problems[8] and "10.0.0.7" in problems[7]  # refused from memory too
    assert problems[9:] == [None, None]  # a name that does not resolve fails later, DNS_ERROR
    # one lookup per name, none for literals; an unresolved name is asked again
    assert policy.lookups == ["shop.example", "inside.example", "gone.example", "gone.example"]


def test_resolver_refuses_a_rebound_address():
    """The resolver checks the address the connection will use (DNS rebinding)."""
    resolver = GuardedResolver.__new__(GuardedResolver)
    resolver.policy = AddressPolicy()
    assert resolver._checked("93.184.215.14", "public.example") == "93.184.215.14"
    with pytest.raises(FetchBlockedError):
        resolver._checked("127.0.0.1", "rebind.example")
    assert "rebind.example" in blocked_by_resolver


# GuardedResolver resolving through a running reactor, as a crawl's does: the reactor
# cannot be restarted, so it runs in a process of its own; prints one answer per lookup
RESOLVE_WITH_REACTOR = """
import json, sys
from scrapy.utils.reactor import install_reactor
install_reactor("twisted.internet.asyncioreactor.AsyncioSelectorReactor")
from scrapy.utils.test import get_crawler
from twisted.internet import defer, reactor
from batchscraper import settings as project_settings
from batchscraper.downloadermiddlewares.ssrf import GuardedResolver, blocked_by_resolver

def resolve(overrides, name):
    settings = {k: getattr(project_settings, k) for k in dir(project_settings) if k.isupper()}
    crawler = get_crawler(settings_dict={**settings, **overrides})
    return GuardedResolver.from_crawler(crawler, reactor).getHostByName(name).addCallbacks(
        lambda address: {"address": address},
        lambda failure: {"error": type(failure.value).__name__,
                         "blocked": blocked_by_resolver.get(name)},
    )

@defer.inlineCallbacks
def main():
    try:
        answers = []
        for overrides, name in json.loads(sys.argv[1]):
            answers.append((yield resolve(overrides, name)))
        print(json.dumps(answers))
    finally:
        reactor.stop()

reactor.callWhenRunning(main)
reactor.run()
"""


def test_resolver_checks_what_the_reactor_resolves():
    """localhost: refused by default, allowed by BATCH_ALLOWED_NETWORKS or as a BATCH_PROXIES
    host; the refusal is remembered under the name (reported as FETCH_BLOCKED)."""
    lookups = [
        ({}, "localhost"),
        ({"BATCH_ALLOWED_NETWORKS": ["127.0.0.0/8"]}, "localhost"),
        ({"BATCH_PROXIES": ["http://localhost:3128"]}, "localhost"),
    ]
    result = subprocess.run(
        [sys.executable, "-c", RESOLVE_WITH_REACTOR, json.dumps(lookups)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    refused, allowed, trusted = json.loads(result.stdout)
    assert refused["error"] == "FetchBlockedError"
    assert "127.0.0.1 is not public" in refused["blocked"]
    assert allowed == trusted == {"address": "127.0.0.1"}


@pytest.mark.slow
def test_crawl_blocks_loopback_by_default(crawl, site: ExampleSite, store: BatchStore):
    hits = site.hits("/products/1")
    schema = json.dumps({"type": "object", "properties": {"name": {"type": "string"}}})
    result = crawl(
        urls=site.url("/products/1"), schema=schema, settings={"BATCH_ALLOWED_NETWORKS": ""}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (item,) = store.iter_items(batch_id_from(result))
    assert item["status"] == "failed"
    assert item["error"]["code"] == "FETCH_BLOCKED"
    assert item["error"]["retryable"] is False
    assert site.hits("/products/1") == hits


@pytest.mark.slow
def test_crawl_checks_every_redirect_hop(crawl, site: ExampleSite, store: BatchStore):
    target = site.url("/products/2").replace("127.0.0.1", "127.0.0.2")
    url = site.url(f"/redirect-to?url={target}")
    schema = json.dumps({"type": "object", "properties": {"name": {"type": "string"}}})
    hits = site.hits("/redirect-to")
    result = crawl(urls=url, schema=schema, settings={"BATCH_ALLOWED_NETWORKS": "127.0.0.1/32"})
    assert result.returncode == 0, result.stderr[-2000:]
    (item,) = store.iter_items(batch_id_from(result))
    assert item["error"]["code"] == "FETCH_BLOCKED", item["error"]
    assert site.hits("/redirect-to") - hits == 1  # the first hop, then blocked, not retried
