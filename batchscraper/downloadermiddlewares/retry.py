"""Downloader middlewares."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.http import Response

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackoffConfig:
    base: float
    cap: float


class BackoffRetryMiddleware(RetryMiddleware):
    """Scrapy's retry, with exponential backoff that honours ``Retry-After``.

    The wait happens before the retry is handed back to the engine, so the
    retried request keeps holding its concurrency slot: a struggling host
    sees fewer requests, not the same number later.
    """

    backoff: BackoffConfig

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> BackoffRetryMiddleware:
        middleware = super().from_crawler(crawler)
        middleware.backoff = BackoffConfig(
            base=crawler.settings.getfloat("BATCH_RETRY_BACKOFF_BASE"),
            cap=crawler.settings.getfloat("BATCH_RETRY_BACKOFF_MAX"),
        )
        return middleware

    async def process_response(  # type: ignore[override]
        self, request: Request, response: Response
    ) -> Request | Response:
        result = super().process_response(request, response)
        if isinstance(result, Request):
            await asyncio.sleep(self.delay(request, response))
        return result

    async def process_exception(  # type: ignore[override]
        self, request: Request, exception: Exception
    ) -> Request | Response | None:
        result = super().process_exception(request, exception)
        if isinstance(result, Request):
            await asyncio.sleep(self.delay(request, None))
        return result

    def delay(self, request: Request, response: Response | None) -> float:
        """Seconds to wait before retry number ``retry_times`` + 1."""
        retry_after = retry_after_seconds(response) if response is not None else None
        if retry_after is not None:
            return min(retry_after, self.backoff.cap)
        attempt = request.meta.get("retry_times", 0)  # retries already made of this request
        return min(self.backoff.base * 2**attempt, self.backoff.cap)


def retry_after_seconds(response: Response) -> float | None:
    """The ``Retry-After`` header as seconds (delta or HTTP date), or None."""
    value = response.headers.get(b"Retry-After")
    if not value:
        return None
    text = value.decode("latin-1").strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max((when - dt.datetime.now(dt.UTC)).total_seconds(), 0.0)
