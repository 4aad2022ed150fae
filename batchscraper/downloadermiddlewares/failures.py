"""Map download failures to the public per-item error codes."""

from __future__ import annotations

import gzip
import zlib
from urllib.parse import urlsplit

# the classes playwright.async_api re-exports; importing that module (the whole client API)
# costs a crawl that renders no page ~0.1 s of CPU at start
from playwright._impl._errors import Error as PlaywrightError
from playwright._impl._errors import TimeoutError as PlaywrightTimeoutError
from scrapy import exceptions as scrapy_error
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet import error as twisted_error
from twisted.python.failure import Failure

from batchscraper.downloadermiddlewares.ssrf import blocked_by_resolver
from batchscraper.exceptions import (
    BadContentEncodingError,
    ConnectionFailedError,
    ContentTooLargeError,
    DNSError,
    FetchBlockedError,
    FetchError,
    FetchTimeoutError,
    HttpStatusError,
    RenderFailedError,
    TooManyRedirectsError,
)

RETRYABLE_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504, 522, 524})

# exception types -> the error they are; checked in order
FAILURE_CODES: tuple[tuple[tuple[type[BaseException], ...], type[FetchError]], ...] = (
    ((scrapy_error.CannotResolveHostError, twisted_error.DNSLookupError), DNSError),
    (
        (
            scrapy_error.DownloadTimeoutError,
            twisted_error.TimeoutError,
            TimeoutError,
            PlaywrightTimeoutError,
        ),
        FetchTimeoutError,
    ),
    ((scrapy_error.DownloadCancelledError,), ContentTooLargeError),
    # a body that does not decode with its Content-Encoding (HttpCompressionMiddleware)
    ((gzip.BadGzipFile, zlib.error, EOFError), BadContentEncodingError),
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
        ConnectionFailedError,
    ),
)


def fetch_error_from_failure(failure: Failure) -> FetchError:
    """The :class:`FetchError` (code, message, retryable) for a request's errback failure."""
    exc = failure.value
    assert exc is not None
    if isinstance(exc, FetchError):
        return exc
    host = urlsplit(failure.request.url).hostname if hasattr(failure, "request") else None
    if host in blocked_by_resolver:
        return FetchBlockedError(blocked_by_resolver[host])
    if isinstance(exc, HttpError):
        status = exc.response.status
        return HttpStatusError(
            f"HTTP {status} from {exc.response.url}",
            retryable=status in RETRYABLE_HTTP,
            http_status=status,
        )
    if isinstance(exc, scrapy_error.IgnoreRequest) and "DOWNLOAD_MAXSIZE" in str(exc):
        # a compressed body that inflates past the limit (decompression bomb)
        return ContentTooLargeError(str(exc))
    if isinstance(exc, scrapy_error.IgnoreRequest) and "redirect" in str(exc):
        return TooManyRedirectsError(str(exc))
    if isinstance(exc, PlaywrightError) and not isinstance(exc, PlaywrightTimeoutError):
        return browser_error(exc)
    for types, error in FAILURE_CODES:
        if isinstance(exc, types):
            return error(_message(exc))
    return ConnectionFailedError(_message(exc))


# net::ERR_* of a failed browser navigation -> the error it is
BROWSER_NET_ERRORS: tuple[tuple[str, type[FetchError]], ...] = (
    ("ERR_NAME_NOT_RESOLVED", DNSError),
    ("ERR_CONNECTION", ConnectionFailedError),
    ("ERR_TIMED_OUT", FetchTimeoutError),
    ("ERR_TOO_MANY_REDIRECTS", TooManyRedirectsError),
    # the egress guard could not connect (a refusal is attributed before this mapping)
    ("ERR_TUNNEL_CONNECTION_FAILED", ConnectionFailedError),
    ("ERR_BLOCKED_BY_CLIENT", FetchBlockedError),
)


def browser_error(exc: PlaywrightError) -> FetchError:
    """A Playwright failure: a navigation error, or the browser itself failing."""
    message = exc.message.splitlines()[0] if exc.message else type(exc).__name__
    for marker, error in BROWSER_NET_ERRORS:
        if marker in message:
            return error(message)
    return RenderFailedError(message)


def _message(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
