"""Proxies: the `proxy` option, rotation and benching, and credentials that never leak.

In-process: the option's parsing and the rotation middleware built from a crawler.
End to end: real crawls through a real counting proxy on 127.0.0.1, beside one that
answers 407 to everything and a port where nothing listens.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from scrapy import Request
from scrapy.core.downloader.handlers.http11 import TunnelError
from scrapy.exceptions import DownloadConnectionRefusedError
from scrapy.http import HtmlResponse
from scrapy.utils.misc import build_from_crawler
from scrapy.utils.test import get_crawler

from batchscraper.demo.site import ExampleSite
from batchscraper.downloadermiddlewares.proxies import ProxyRotationMiddleware
from batchscraper.exceptions import (
    FetchBlockedError,
    InvalidOptionError,
    InvalidURLsError,
    ProxyFailedError,
)
from batchscraper.inputs import parse_batch
from batchscraper.proxies import parse_proxies
from batchscraper.store import BatchStore
from tests.conftest import assert_counters_match_items, batch_id_from
from tests.proxy_server import CountingProxy, closed_port
from tests.socks_server import Socks5Proxy
from tests.test_downloadermiddlewares import DummySpider, project
from tests.tls_certs import self_signed, server_context

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"},
                                           "price": {"type": "number"}},
          "required": ["name", "price"]}
PASSWORD = "pw-9f3c1e77"  # must never appear in a stored document or a log
PUBLIC = "http://93.184.215.14/page"


# -- the option ----------------------------------------------------------------------------


def batch_with(options: dict[str, Any], urls: Any = None) -> Any:
    return parse_batch(urls or ["https://example.com/a"], SCHEMA, options=options)


def test_proxy_option_takes_one_url_or_a_list_and_stores_it_redacted() -> None:
    spec = batch_with({"proxy": f"http://user:{PASSWORD}@proxy.example:8080"})
    (proxy,) = spec.options.proxy
    assert (proxy.host, proxy.port, proxy.username, proxy.password) == (
        "proxy.example", 8080, "user", PASSWORD)
    assert spec.options.to_dict()["proxy"] == ["http://***:***@proxy.example:8080"]
    assert PASSWORD not in repr(spec.options)
    spec = batch_with({"proxy": ["http://a.example:3128", "https://b.example:443",
                                 "http://a.example:3128"]})
    assert [p.address for p in spec.options.proxy] == ["http://a.example:3128",
                                                       "https://b.example:443"]
    per_url = batch_with({}, [{"url": "https://example.com/", "proxy": "http://c.example:1"}])
    assert per_url.urls[0].proxy is not None and per_url.urls[0].proxy[0].host == "c.example"


def test_socks5_proxies_are_accepted_with_their_login() -> None:
    spec = batch_with({"proxy": [f"socks5://user:{PASSWORD}@socks.example:1080",
                                 "socks5h://socks.example:1081"]})
    first, second = spec.options.proxy
    assert (first.scheme, first.username, first.password, second.scheme) == (
        "socks5", "user", PASSWORD, "socks5h")
    assert spec.options.to_dict()["proxy"] == ["socks5://***:***@socks.example:1080",
                                               "socks5h://socks.example:1081"]


@pytest.mark.parametrize(
    ("proxy", "says"),
    [
        ("socks4://user:pw@host.example:1080", "SOCKS4 has no login and no IPv6"),
        ("socks4a://host.example:1080", "use socks5h://"),
        ("socks://host.example:1080", "say which SOCKS"),
        (f"socks5://{'u' * 256}:pw@host.example:1080", "username must be 1 to 255 bytes"),
        ("socks5://user:@host.example:1080", "password must be 1 to 255 bytes"),
        ("ftp://host.example:21", "scheme must be one of"),
        ("http://host.example", "give the proxy's port"),
        ("http://host.example:8080/path", "no path"),
        ("http://***:***@host.example:8080", "redacted"),
        ([""], "must be a URL string"),
        (42, "must be a proxy URL"),
        ([f"http://h{n}.example:1" for n in range(101)], "the limit is 100"),
    ],
)
def test_bad_proxy_options_are_refused_without_echoing_credentials(proxy: Any, says: str) -> None:
    with pytest.raises(InvalidOptionError) as caught:
        batch_with({"proxy": proxy})
    assert caught.value.code == "INVALID_OPTION" and says in caught.value.message
    assert "pw" not in caught.value.message.replace("proxy", "")


def test_a_proxy_goes_with_the_browser() -> None:
    """The browser's connections go through the egress guard, which chains to the proxy."""
    spec = batch_with({"proxy": "http://h.example:1", "render_js": "always"})
    assert spec.options.render_js == "always" and spec.options.proxy
    spec = batch_with({}, [{"url": "https://example.com/", "proxy": "socks5://h.example:1",
                            "mode": "js"}])
    assert spec.urls[0].render_js == "always" and spec.urls[0].proxy


def test_a_bad_per_url_proxy_names_its_index() -> None:
    with pytest.raises(InvalidURLsError) as caught:
        batch_with({}, ["https://example.com/", {"url": "https://example.com/b",
                                                 "proxy": f"socks4://u:{PASSWORD}@h:1"}])
    assert caught.value.code == "INVALID_URL" and caught.value.details[0]["index"] == 1
    assert "SOCKS4" in json.dumps(caught.value.details)
    assert PASSWORD not in json.dumps(caught.value.details)


# -- the middleware, in process -------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rotation(clock: Clock | None = None, **overrides: Any) -> ProxyRotationMiddleware:
    crawler = get_crawler(DummySpider, project(**overrides))
    middleware = build_from_crawler(ProxyRotationMiddleware, crawler)
    if clock is not None:
        middleware.clock = clock
    return middleware


def proxied(url: str, pool: Any) -> Request:
    return Request(url, meta={"batch_proxies": pool})


POOL = parse_proxies(["http://203.0.113.1:8080", "http://203.0.113.2:8080",
                      "http://203.0.113.3:8080"])


def test_each_domain_keeps_its_proxy_and_new_domains_rotate() -> None:
    middleware = rotation(BATCH_ALLOWED_NETWORKS=["203.0.113.0/24"])
    chosen = {}
    for host in ("93.184.215.1", "93.184.215.2", "93.184.215.3", "93.184.215.1"):
        request = proxied(f"http://{host}/x", POOL)
        asyncio.run(middleware.process_request(request))
        chosen.setdefault(host, set()).add(request.meta["proxy"])
    assert [len(proxies) for proxies in chosen.values()] == [1, 1, 1]
    assert len(set.union(*chosen.values())) == 3
    assert middleware.stats.get_value("batch/proxy/requests") == 4


def test_a_failing_proxy_is_benched_and_the_request_goes_through_another() -> None:
    clock = Clock()
    middleware = rotation(clock, BATCH_ALLOWED_NETWORKS=["203.0.113.0/24"],
                          BATCH_PROXY_BENCH_SECONDS=10)
    pool = POOL[:2]
    request = proxied(PUBLIC, pool)
    asyncio.run(middleware.process_request(request))
    first = request.meta["batch_proxy"]
    answer = HtmlResponse(PUBLIC, status=407, request=request)
    rerouted = middleware.process_response(request, answer)
    assert isinstance(rerouted, Request) and rerouted.meta["proxies_tried"] == (first,)
    asyncio.run(middleware.process_request(rerouted))
    second = rerouted.meta["batch_proxy"]
    assert second != first
    # the second fails too (connection refused): nothing is left, PROXY_FAILED
    with pytest.raises(ProxyFailedError) as caught:
        middleware.process_exception(rerouted, DownloadConnectionRefusedError("refused"))
    assert (caught.value.code, caught.value.retryable) == ("PROXY_FAILED", True)
    with pytest.raises(ProxyFailedError):  # both are benched for every request now
        asyncio.run(middleware.process_request(proxied("http://93.184.215.9/", pool)))
    clock.now += 10  # the first one's bench is over (the second's doubled? no: its first)
    fresh = proxied("http://93.184.215.9/", pool)
    asyncio.run(middleware.process_request(fresh))
    assert fresh.meta["batch_proxy"] in pool
    stats = middleware.stats
    assert (stats.get_value("batch/proxy/benched"), stats.get_value("batch/proxy/exhausted")) == (
        2, 2)


def test_bans_in_a_row_bench_a_proxy_and_a_tunnel_407_is_the_proxys_failure() -> None:
    middleware = rotation(BATCH_ALLOWED_NETWORKS=["203.0.113.0/24"], BATCH_PROXY_MAX_BANS=2)
    request = proxied(PUBLIC, POOL[:2])
    asyncio.run(middleware.process_request(request))
    banned = HtmlResponse(PUBLIC, status=403, request=request)
    assert middleware.process_response(request, banned) is banned  # one ban: the answer stands
    rerouted = middleware.process_response(request, banned)
    assert isinstance(rerouted, Request)
    asyncio.run(middleware.process_request(rerouted))
    tunnel = TunnelError("Could not open CONNECT tunnel with proxy 203.0.113.2:8080 "
                         "[b'HTTP/1.1 407 Proxy Authentication Required\\r\\n']")
    with pytest.raises(ProxyFailedError):
        middleware.process_exception(rerouted, tunnel)
    target_down = TunnelError("Could not open CONNECT tunnel with proxy 203.0.113.2:8080 "
                              "[b'HTTP/1.1 502 Bad Gateway\\r\\n']")
    assert middleware.process_exception(rerouted, target_down) is None  # the target's problem
    # Scrapy's own wording of a CONNECT answer
    scrapy_407 = TunnelError("Could not open CONNECT tunnel with proxy 203.0.113.1:8080 "
                             "[{'status': 407, 'reason': b'Proxy Authentication Required'}]")
    again = proxied(PUBLIC, POOL)
    asyncio.run(middleware.process_request(again))
    with pytest.raises(ProxyFailedError):  # benched: the last one that was left
        middleware.process_exception(again, scrapy_407)
    assert middleware.stats.get_value("batch/proxy/benched") == 3


def test_socks_and_browser_requests_go_through_the_guards_route_of_their_proxy() -> None:
    """One choice for both paths: the domain's proxy, reached through the egress guard."""
    middleware = rotation(BATCH_ALLOWED_NETWORKS=["203.0.113.0/24"])
    pool = parse_proxies([f"socks5://u:{PASSWORD}@203.0.113.7:1080"])
    try:
        fetch = proxied("http://93.184.215.5/a", pool)
        asyncio.run(middleware.process_request(fetch))
        render = Request("http://93.184.215.5/b", meta={"batch_proxies": pool, "playwright": True})
        asyncio.run(middleware.process_request(render))
    finally:
        middleware.guard.stop()
    route = fetch.meta["batch_egress_route"]
    assert (route.upstream, route.trusted) == (pool[0], False)
    assert fetch.meta["proxy"] == route.url == f"http://127.0.0.1:{route.port}"  # no login
    assert render.meta["batch_egress_route"] == route and "proxy" not in render.meta
    assert render.meta["batch_proxy"] == fetch.meta["batch_proxy"] == pool[0]


def test_a_users_proxy_must_pass_the_address_policy_the_operators_need_not() -> None:
    middleware = rotation()  # no network allowed
    loopback = parse_proxies(f"http://u:{PASSWORD}@127.0.0.1:3128")
    with pytest.raises(FetchBlockedError) as caught:
        asyncio.run(middleware.process_request(proxied(PUBLIC, loopback)))
    assert "proxy http://***:***@127.0.0.1:3128" in caught.value.message
    assert PASSWORD not in caught.value.message
    operator = rotation(BATCH_PROXIES=[f"http://u:{PASSWORD}@127.0.0.1:3128"])
    request = Request(PUBLIC)
    asyncio.run(operator.process_request(request))
    assert request.meta["proxy"] == f"http://u:{PASSWORD}@127.0.0.1:3128"  # for HttpProxyMiddleware


# -- end to end ------------------------------------------------------------------------------


@pytest.fixture()
def second_site() -> Any:
    """The example site on another loopback address: a second domain."""
    with ExampleSite(host="127.0.0.2") as running:
        yield running


def stored_text(store: BatchStore, batch_id: str) -> str:
    batch = store.get_batch(batch_id)
    items = list(store.iter_items(batch_id))
    return json.dumps([batch, items], default=str)


@pytest.mark.slow
def test_crawl_rotates_past_refusing_proxies_and_keeps_credentials_secret(
    crawl, site: ExampleSite, second_site: ExampleSite, store: BatchStore
) -> None:
    with CountingProxy(credentials=("user", PASSWORD)) as good, \
            CountingProxy(refuse=True) as refusing:
        dead = f"http://127.0.0.1:{closed_port()}"
        pool = [refusing.url(), dead, good.url(f"user:{PASSWORD}")]
        urls = [site.url(f"/products/{n}") for n in range(1, 7)]
        urls += [second_site.url(f"/products/{n}") for n in range(7, 13)]
        result = crawl(urls=json.dumps(urls), schema=json.dumps(SCHEMA),
                       options=json.dumps({"proxy": pool, "retries": 0, "concurrency": 2}),
                       settings={"BATCH_PROXY_BENCH_SECONDS": 600})
    assert result.returncode == 0, result.stderr[-3000:]
    batch_id = batch_id_from(result)
    items = list(store.iter_items(batch_id))
    assert [item["status"] for item in items] == ["completed"] * 12, [i.get("error") for i in items]
    # every page went through the good proxy, logged in; the refusing one was benched at its
    # first 407 (at most the 2 requests already in flight reached it)
    assert sorted(target for _, target in good.requests) == sorted(urls)
    assert 1 <= len(refusing.requests) <= 2
    assert site.hits("/products/1") >= 1 and second_site.hits("/products/7") >= 1
    # the password: kept apart, never in the batch, its items or the log
    assert PASSWORD not in stored_text(store, batch_id) and PASSWORD not in result.stderr
    assert store.get_batch(batch_id)["options"]["proxy"][2] == good.url("***:***")
    secrets = store.proxy_secrets(batch_id)
    assert secrets is not None and secrets["batch"][2] == good.url(f"user:{PASSWORD}")
    assert_counters_match_items(store, batch_id)


@pytest.mark.slow
def test_crawl_with_every_proxy_failing_fails_its_items_with_proxy_failed(
    crawl, site: ExampleSite, store: BatchStore
) -> None:
    hits = site.hits("/products/21")
    with CountingProxy(refuse=True) as refusing:
        urls = [site.url(f"/products/{n}") for n in (21, 22, 23)]
        per_url = [urls[0], urls[1], {"url": urls[2], "proxy": f"http://127.0.0.1:{closed_port()}"}]
        result = crawl(urls=json.dumps(per_url), schema=json.dumps(SCHEMA),
                       options=json.dumps({"proxy": refusing.url(), "retries": 0}))
    assert result.returncode == 0, result.stderr[-3000:]
    batch_id = batch_id_from(result)
    errors = [item["error"] for item in store.iter_items(batch_id)]
    assert [(e["code"], e["retryable"]) for e in errors] == [("PROXY_FAILED", True)] * 3
    assert site.hits("/products/21") == hits  # nothing reached the site
    assert store.get_batch(batch_id)["failures"] == {"PROXY_FAILED": 3}
    assert_counters_match_items(store, batch_id)


@pytest.mark.slow
def test_crawl_through_socks5_proxies_benches_the_one_refusing_the_login(
    crawl, site: ExampleSite, second_site: ExampleSite, store: BatchStore
) -> None:
    """Scrapy speaks no SOCKS: these fetches go through the egress guard, chained to them."""
    with Socks5Proxy(credentials=("user", PASSWORD)) as good, \
            Socks5Proxy(credentials=("user", "another")) as refusing:
        pool = [refusing.url(f"user:{PASSWORD}"), good.url(f"user:{PASSWORD}", "socks5h")]
        urls = [site.url(f"/products/{n}") for n in (41, 42, 43)]
        urls += [second_site.url(f"/products/{n}") for n in (44, 45, 46)]
        result = crawl(urls=json.dumps(urls), schema=json.dumps(SCHEMA),
                       options=json.dumps({"proxy": pool, "retries": 0, "concurrency": 2}),
                       settings={"BATCH_PROXY_BENCH_SECONDS": 600})
    assert result.returncode == 0, result.stderr[-3000:]
    batch_id = batch_id_from(result)
    items = list(store.iter_items(batch_id))
    assert [item["status"] for item in items] == ["completed"] * 6, [i.get("error") for i in items]
    assert items[0]["data"]["name"] == "Product 41"
    # every page went through the good proxy (an IPv4 target: sent as an address), logged in
    targets = {f"http://{host}:{port}" for _, host, port in good.requests}
    assert targets == {site.base_url, second_site.base_url}
    assert len(good.requests) >= 6 and set(good.logins) == {("user", PASSWORD)}
    assert 1 <= len(refusing.requests) + len(refusing.logins) <= 4
    assert PASSWORD not in stored_text(store, batch_id) and PASSWORD not in result.stderr
    assert store.get_batch(batch_id)["options"]["proxy"] == [
        refusing.url("***:***"), good.url("***:***", "socks5h")]
    assert_counters_match_items(store, batch_id)


@pytest.mark.slow
def test_crawl_through_an_https_proxy_speaks_tls_to_it(
    crawl, site: ExampleSite, store: BatchStore, tmp_path: Any, monkeypatch: Any
) -> None:
    """TLS to the proxy: Scrapy does not for https pages; the egress guard does, for all."""
    certificate = self_signed("127.0.0.1", tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate))  # the crawl trusts the test's CA
    with CountingProxy(credentials=("user", PASSWORD), tls=server_context(certificate)) as proxy:
        urls = [site.url(f"/products/{n}") for n in (51, 52)]
        result = crawl(urls=json.dumps(urls), schema=json.dumps(SCHEMA),
                       options=json.dumps({"proxy": proxy.url(f"user:{PASSWORD}"), "retries": 0}))
    assert result.returncode == 0, result.stderr[-3000:]
    batch_id = batch_id_from(result)
    assert [item["status"] for item in store.iter_items(batch_id)] == ["completed"] * 2
    assert sorted(target for _, target in proxy.requests) == sorted(urls)
    assert PASSWORD not in stored_text(store, batch_id) and PASSWORD not in result.stderr
    assert store.get_batch(batch_id)["options"]["proxy"] == [proxy.url("***:***")]
