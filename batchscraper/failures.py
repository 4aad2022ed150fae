"""Map download failures to the public per-item error codes."""

from __future__ import annotations

import gzip
import zlib
from urllib.parse import urlsplit

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from scrapy import exceptions as scrapy_error
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet import error as twisted_error
from twisted.python.failure import Failure

from batchscraper.exceptions import FetchError
from batchscraper.ssrf import FetchBlockedError, blocked_by_resolver

RETRYABLE_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504, 522, 524})

# exception type -> (code, retryable); checked in order
FAILURE_CODES: tuple[tuple[tuple[type[BaseException], ...], str, bool], ...] = (
    ((scrapy_error.CannotResolveHostError, twisted_error.DNSLookupError), "DNS_ERROR", True),
    (
        (
            scrapy_error.DownloadTimeoutError,
            twisted_error.TimeoutError,
            TimeoutError,
            PlaywrightTimeoutError,
        ),
        "TIMEOUT",
        True,
    ),
    ((scrapy_error.DownloadCancelledError,), "CONTENT_TOO_LARGE", False),
    # a body that does not decode with its Content-Encoding (HttpCompressionMiddleware)
    ((gzip.BadGzipFile, zlib.error, EOFError), "BAD_CONTENT_ENCODING", False),
    (
        (
            scrapy_error.DownloadConnectionRefusedError,
            scrapy_error.DownloadFailedError,
            scrapy_error.ResponseDataLossError,
            twisted_error.ConnectError,
            twisted_error.ConnectionLost,
            twisted_error.ConnectionDone,
            ConnectionError,
        ),
        "CONNECTION_FAILED",
        True,
    ),
)


def fetch_error_from_failure(failure: Failure) -> FetchError:
    """The :class:`FetchError` (code, message, retryable) for a request's errback failure."""
    exc = failure.value
    if isinstance(exc, FetchError):
        return exc
    if isinstance(exc, FetchBlockedError):
        return FetchError(str(exc), code="FETCH_BLOCKED", retryable=False)
    host = urlsplit(failure.request.url).hostname if hasattr(failure, "request") else None
    if host in blocked_by_resolver:
        return FetchError(blocked_by_resolver[host], code="FETCH_BLOCKED", retryable=False)
    if isinstance(exc, HttpError):
        status = exc.response.status
        return FetchError(
            f"HTTP {status} from {exc.response.url}",
            code="HTTP_ERROR",
            retryable=status in RETRYABLE_HTTP,
            http_status=status,
        )
    if isinstance(exc, scrapy_error.IgnoreRequest) and "DOWNLOAD_MAXSIZE" in str(exc):
        # a compressed body that inflates past the limit (decompression bomb)
        return FetchError(str(exc), code="CONTENT_TOO_LARGE", retryable=False)
    if isinstance(exc, scrapy_error.IgnoreRequest) and "redirect" in str(exc):
        return FetchError(str(exc), code="TOO_MANY_REDIRECTS", retryable=False)
    if isinstance(exc, PlaywrightError) and not isinstance(exc, PlaywrightTimeoutError):
        return browser_error(exc)
    for types, code, retryable in FAILURE_CODES:
        if isinstance(exc, types):
            return FetchError(_message(exc), code=code, retryable=retryable)
    return FetchError(_message(exc), code="CONNECTION_FAILED", retryable=True)


# net::ERR_* of a failed browser navigation -> our code
BROWSER_NET_ERRORS = (
    ("ERR_NAME_NOT_RESOLVED", "DNS_ERROR"),
    ("ERR_CONNECTION", "CONNECTION_FAILED"),
    ("ERR_TIMED_OUT", "TIMEOUT"),
    ("ERR_TOO_MANY_REDIRECTS", "TOO_MANY_REDIRECTS"),
    # the egress guard could not connect (a refusal is attributed before this mapping)
    ("ERR_TUNNEL_CONNECTION_FAILED", "CONNECTION_FAILED"),
    ("ERR_BLOCKED_BY_CLIENT", "FETCH_BLOCKED"),
)


def browser_error(exc: PlaywrightError) -> FetchError:
    """A Playwright failure: a navigation error, or the browser itself failing."""
    message = exc.message.splitlines()[0] if exc.message else type(exc).__name__
    for marker, code in BROWSER_NET_ERRORS:
        if marker in message:
            return FetchError(message, code=code, retryable=code != "FETCH_BLOCKED")
    return FetchError(message, code="RENDER_FAILED", retryable=True)


def _message(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
