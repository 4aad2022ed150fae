"""The downloader middlewares in-process: built from a crawler, their methods called directly.

No crawl runs and no request leaves the process: hosts are IP literals or
local names, which the SSRF guard judges without DNS.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable
from typing import Any

import pytest
import scrapy
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from scrapy import Request
from scrapy.core.engine import ExecutionEngine
from scrapy.crawler import Crawler
from scrapy.exceptions import (
    DownloadCancelledError,
    DownloadTimeoutError,
    IgnoreRequest,
    NotConfigured,
)
from scrapy.http import Response
from scrapy.robotstxt import ProtegoRobotParser
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.misc import build_from_crawler
from scrapy.utils.test import get_crawler
from twisted.internet.error import ConnectionLost, DNSLookupError
from twisted.python.failure import Failure

from batchscraper import settings as project_settings
from batchscraper.downloadermiddlewares.breaker import CircuitBreakerMiddleware, domain_health
from batchscraper.downloadermiddlewares.failures import browser_error, fetch_error_from_failure
from batchscraper.downloadermiddlewares.retry import BackoffRetryMiddleware
from batchscraper.downloadermiddlewares.robots import RobotsTxtPolicy
from batchscraper.downloadermiddlewares.ssrf import SsrfGuardMiddleware
from batchscraper.exceptions import (
    DomainCircuitOpenError,
    FetchBlockedError,
    FetchTimeoutError,
    RobotsDisallowedError,
)

PUBLIC = "http://93.184.215.14/page"  # a public address literal: no DNS, never connected to


class DummySpider(scrapy.Spider):
    name = "dummy"


def project(**overrides: Any) -> dict[str, Any]:
    """batchscraper/settings.py plus overrides (the reactor is left to get_crawler)."""
    names = [name for name in dir(project_settings) if name.isupper()]
    base = {name: getattr(project_settings, name) for name in names if name != "TWISTED_REACTOR"}
    return {**base, **overrides}


def crawler_with_spider(**overrides: Any) -> Crawler:
    crawler = get_crawler(DummySpider, project(**overrides))
    crawler.spider = DummySpider.from_crawler(crawler)
    return crawler


# -- SSRF guard ------------------------------------------------------------------------


def ssrf_guard(**overrides: Any) -> SsrfGuardMiddleware:
    return build_from_crawler(SsrfGuardMiddleware, get_crawler(DummySpider, project(**overrides)))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/",
        "http://2130706433/",  # 127.0.0.1 as a decimal number
        "http://0x7f.1/",
        "http://[::ffff:127.0.0.1]/",  # IPv4-mapped IPv6
        "http://10.1.2.3/",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost/",
        "http://metadata.google.internal/",
        "http://printer.local/",
        "file:///etc/passwd",
        "http://user:secret@93.184.215.14/",
    ],
)
def test_ssrf_guard_refuses_non_public_targets(url: str) -> None:
    with pytest.raises(FetchBlockedError) as refused:
        asyncio.run(ssrf_guard().process_request(Request(url)))
    assert (refused.value.code, refused.value.retryable) == ("FETCH_BLOCKED", False)
    assert isinstance(refused.value, IgnoreRequest)  # Scrapy drops the request


def test_ssrf_guard_lets_public_addresses_through() -> None:
    assert asyncio.run(ssrf_guard().process_request(Request(PUBLIC))) is None


def test_allowed_networks_open_only_those_networks() -> None:
    guard = ssrf_guard(BATCH_ALLOWED_NETWORKS=["127.0.0.0/8"])
    assert asyncio.run(guard.process_request(Request("http://127.0.0.1:8080/"))) is None
    assert asyncio.run(guard.process_request(Request("http://2130706433/"))) is None
    with pytest.raises(FetchBlockedError):
        asyncio.run(guard.process_request(Request("http://10.1.2.3/")))


def test_allowed_ports_refuse_other_ports() -> None:
    guard = ssrf_guard(BATCH_ALLOWED_PORTS=[443])
    assert asyncio.run(guard.process_request(Request("https://93.184.215.14/"))) is None
    with pytest.raises(FetchBlockedError):
        asyncio.run(guard.process_request(Request(PUBLIC)))


# -- robots.txt --------------------------------------------------------------------------

ROBOTS = b"User-agent: *\nDisallow: /private/\n"


def test_robots_disallowed_url_fails_with_its_own_code() -> None:
    crawler = crawler_with_spider(ROBOTSTXT_OBEY=True)
    policy = build_from_crawler(RobotsTxtPolicy, crawler)
    parser = ProtegoRobotParser.from_crawler(crawler, ROBOTS)
    policy.process_request_2(parser, Request("http://93.184.215.14/public/1"))  # allowed
    policy.process_request_2(None, Request("http://93.184.215.14/private/1"))  # no robots.txt
    with pytest.raises(RobotsDisallowedError) as refused:
        policy.process_request_2(parser, Request("http://93.184.215.14/private/1"))
    assert (refused.value.code, refused.value.retryable) == ("ROBOTS_DISALLOWED", False)
    assert crawler.stats.get_value("robotstxt/forbidden") == 1


# -- circuit breaker ---------------------------------------------------------------------

BREAKER = {
    "BATCH_BREAKER_WINDOW": 4,
    "BATCH_BREAKER_MIN_REQUESTS": 4,
    "BATCH_BREAKER_STRIKES": 3,
    "BATCH_BREAKER_ERROR_RATE": 0.5,
    "BATCH_BREAKER_DELAY": 0.5,
    "DOWNLOAD_DELAY": 0,
    # the engine is built only for its download slots: nothing is downloaded
    "DOWNLOAD_HANDLERS": {"http": None, "https": None},
}
FAILING, HEALTHY = "http://93.184.215.14/", "http://93.184.215.15/"


def with_breaker(scenario: Callable[[Crawler, CircuitBreakerMiddleware, Any], None]) -> None:
    """Run ``scenario(crawler, breaker, failing_slot)`` with a real engine's downloader."""

    async def main() -> None:
        crawler = crawler_with_spider(**BREAKER)
        crawler.engine = ExecutionEngine(crawler, lambda _: None)
        breaker = build_from_crawler(CircuitBreakerMiddleware, crawler)
        downloader = crawler.engine.downloader
        _, slot = downloader._get_slot(Request(FAILING))  # the slot a download would use
        try:
            scenario(crawler, breaker, slot)
        finally:
            downloader.close()

    asyncio.run(main())


def answer(breaker: CircuitBreakerMiddleware, url: str, status: int, times: int) -> None:
    for n in range(times):
        request = Request(f"{url}?n={n}")
        breaker.process_response(request, Response(request.url, status=status, request=request))


def health(crawler: Crawler, domain: str) -> dict[str, Any]:
    found = domain_health(crawler)
    assert found is not None
    return next(entry for entry in found.top(10) if entry["domain"] == domain)


def test_failing_domain_is_slowed_then_opened() -> None:
    def scenario(crawler: Crawler, breaker: CircuitBreakerMiddleware, slot: Any) -> None:
        answer(breaker, FAILING, 503, 4)
        assert (health(crawler, "93.184.215.14")["breaker"], slot.delay) == ("slowed", 0.5)
        answer(breaker, FAILING, 503, 4)
        assert slot.delay == 1.0  # doubled per strike
        assert crawler.stats.get_value("batch/breaker/slowed") == 2
        answer(breaker, FAILING, 503, 4)
        assert health(crawler, "93.184.215.14") == {
            "domain": "93.184.215.14", "requests": 12, "errors": 12, "delay": 1.0,
            "breaker": "open",
        }
        assert crawler.stats.get_value("batch/breaker/opened") == 1
        with pytest.raises(DomainCircuitOpenError) as refused:
            breaker.process_request(Request(FAILING + "next"))
        assert (refused.value.code, refused.value.retryable) == ("DOMAIN_CIRCUIT_OPEN", True)
        assert crawler.stats.get_value("batch/breaker/refused") == 1
        breaker.process_request(Request(HEALTHY))  # other domains go on

    with_breaker(scenario)


def test_healthy_window_closes_a_slowed_breaker() -> None:
    def scenario(crawler: Crawler, breaker: CircuitBreakerMiddleware, slot: Any) -> None:
        answer(breaker, FAILING, 429, 4)
        assert slot.delay == 0.5
        answer(breaker, FAILING, 200, 3)
        answer(breaker, FAILING, 503, 1)  # 1 error in 4: healthy
        assert (health(crawler, "93.184.215.14")["breaker"], slot.delay) == ("closed", 0.0)
        breaker.process_request(Request(FAILING))

    with_breaker(scenario)


def test_download_errors_count_but_refusals_do_not() -> None:
    def scenario(crawler: Crawler, breaker: CircuitBreakerMiddleware, slot: Any) -> None:
        for n in range(8):
            request = Request(f"{FAILING}?n={n}")
            breaker.process_exception(request, FetchBlockedError("refused by policy"))
            breaker.process_exception(request, IgnoreRequest("robots.txt"))
        assert domain_health(crawler).top(10) == []  # type: ignore[union-attr]
        for n in range(4):
            breaker.process_exception(Request(f"{FAILING}?n={n}"), ConnectionLost())
        assert health(crawler, "93.184.215.14")["errors"] == 4
        assert crawler.stats.get_value("batch/breaker/slowed") == 1

    with_breaker(scenario)


@pytest.mark.parametrize(
    ("middleware", "setting"),
    [
        (SsrfGuardMiddleware, "BATCH_SSRF_GUARD_ENABLED"),
        (RobotsTxtPolicy, "ROBOTSTXT_OBEY"),
        (CircuitBreakerMiddleware, "BATCH_BREAKER_ENABLED"),
        (BackoffRetryMiddleware, "RETRY_ENABLED"),
    ],
)
def test_switched_off_middleware_is_not_configured(middleware: type, setting: str) -> None:
    crawler = crawler_with_spider(**{setting: False})
    with pytest.raises(NotConfigured):
        build_from_crawler(middleware, crawler)


# -- retries with backoff -----------------------------------------------------------------


def retry_middleware(**overrides: Any) -> tuple[Crawler, BackoffRetryMiddleware]:
    crawler = crawler_with_spider(**overrides)
    return crawler, build_from_crawler(BackoffRetryMiddleware, crawler)


def unavailable(request: Request, retry_after: str | None = None) -> Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Response(request.url, status=503, headers=headers, request=request)


def test_503_with_retry_after_is_retried_after_that_delay() -> None:
    crawler, middleware = retry_middleware()
    request = Request(PUBLIC)
    started = time.monotonic()
    retried = asyncio.run(middleware.process_response(request, unavailable(request, "1")))
    assert time.monotonic() - started >= 1.0
    assert isinstance(retried, Request)
    assert (retried.url, retried.meta["retry_times"]) == (PUBLIC, 1)
    assert crawler.stats.get_value("retry/count") == 1


def test_retry_delay_backs_off_and_is_capped() -> None:
    _, middleware = retry_middleware(BATCH_RETRY_BACKOFF_BASE=0.5, BATCH_RETRY_BACKOFF_MAX=30)
    first, late = Request(PUBLIC), Request(PUBLIC, meta={"retry_times": 20})
    assert middleware.delay(first, None) == 0.5
    doubled = [middleware.delay(Request(PUBLIC, meta={"retry_times": n}), None) for n in range(4)]
    assert doubled == [0.5, 1.0, 2.0, 4.0]  # doubled per retry already made
    assert middleware.delay(late, None) == 30.0
    assert middleware.delay(first, unavailable(first, "7")) == 7.0
    assert middleware.delay(first, unavailable(first, "3600")) == 30.0
    assert middleware.delay(first, unavailable(first, "soon")) == 0.5  # unreadable: backoff
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert middleware.delay(first, unavailable(first, past)) == 0.0


def test_retries_run_out() -> None:
    crawler, middleware = retry_middleware(RETRY_TIMES=2)
    request = Request(PUBLIC, meta={"retry_times": 2})
    response = unavailable(request, "0")
    assert asyncio.run(middleware.process_response(request, response)) is response
    assert crawler.stats.get_value("retry/max_reached") == 1
    assert crawler.stats.get_value("retry/count") is None


def test_network_errors_are_retried_and_others_are_not() -> None:
    crawler, middleware = retry_middleware(BATCH_RETRY_BACKOFF_BASE=0.01)
    retried = asyncio.run(middleware.process_exception(Request(PUBLIC), DownloadTimeoutError()))
    assert isinstance(retried, Request) and retried.meta["retry_times"] == 1
    assert asyncio.run(middleware.process_exception(Request(PUBLIC), ValueError("bug"))) is None
    assert crawler.stats.get_value("retry/count") == 1


# -- failures -> error codes -----------------------------------------------------------------


def http_error(status: int) -> HttpError:
    return HttpError(Response(PUBLIC, status=status), "ignored")


@pytest.mark.parametrize(
    ("exception", "code", "retryable"),
    [
        (DNSLookupError("no such host"), "DNS_ERROR", True),
        (DownloadTimeoutError("took 30 s"), "TIMEOUT", True),
        (PlaywrightTimeoutError("Timeout 30000ms exceeded"), "TIMEOUT", True),
        (DownloadCancelledError("over DOWNLOAD_MAXSIZE"), "CONTENT_TOO_LARGE", False),
        (IgnoreRequest("body over DOWNLOAD_MAXSIZE after decompression"),
         "CONTENT_TOO_LARGE", False),
        (IgnoreRequest("max redirections reached"), "TOO_MANY_REDIRECTS", False),
        (zlib.error("invalid stored block lengths"), "BAD_CONTENT_ENCODING", False),
        (ConnectionRefusedError(111, "refused"), "CONNECTION_FAILED", True),
        (ConnectionLost(), "CONNECTION_FAILED", True),
        (http_error(503), "HTTP_ERROR", True),
        (http_error(404), "HTTP_ERROR", False),
        (PlaywrightError("net::ERR_NAME_NOT_RESOLVED at http://x/"), "DNS_ERROR", True),
        (PlaywrightError("Target page, context or browser has been closed"),
         "RENDER_FAILED", True),
        (RuntimeError("unexpected"), "CONNECTION_FAILED", True),
    ],
)
def test_failure_maps_to_error_code(exception: Exception, code: str, retryable: bool) -> None:
    error = fetch_error_from_failure(Failure(exception))
    assert (error.code, error.retryable) == (code, retryable)
    assert error.to_dict() == {"code": code, "message": error.message, "retryable": retryable}


def test_http_error_keeps_its_status_and_fetch_errors_pass_through() -> None:
    assert fetch_error_from_failure(Failure(http_error(429))).status == 429
    own = FetchTimeoutError("already classified")
    assert fetch_error_from_failure(Failure(own)) is own


@pytest.mark.parametrize(
    ("message", "code", "retryable"),
    [
        ("net::ERR_CONNECTION_REFUSED at http://x/\nCall log: ...", "CONNECTION_FAILED", True),
        ("net::ERR_TIMED_OUT at http://x/", "TIMEOUT", True),
        ("net::ERR_TOO_MANY_REDIRECTS at http://x/", "TOO_MANY_REDIRECTS", False),
        ("net::ERR_TUNNEL_CONNECTION_FAILED at http://x/", "CONNECTION_FAILED", True),
        ("net::ERR_BLOCKED_BY_CLIENT at http://x/", "FETCH_BLOCKED", False),
        ("Browser closed unexpectedly", "RENDER_FAILED", True),
    ],
)
def test_browser_error_codes(message: str, code: str, retryable: bool) -> None:
    error = browser_error(PlaywrightError(message))
    assert (error.code, error.retryable) == (code, retryable)
    assert "\n" not in error.message  # the first line only
