"""robots.txt, when a batch asks for it (option ``robots_txt``) or ``ROBOTSTXT_OBEY`` is set.

Scrapy's own middleware, with one difference: a URL that robots.txt
disallows fails with ``ROBOTS_DISALLOWED`` (not retryable) instead of a
generic ignored request, so its item says why it was not fetched.
"""

from __future__ import annotations

import logging

from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware
from scrapy.http import Request
from scrapy.robotstxt import RobotParser

from batchscraper.exceptions import RobotsDisallowedError

logger = logging.getLogger(__name__)


class RobotsTxtPolicy(RobotsTxtMiddleware):
    """Obeys robots.txt; disallowed URLs fail with ``ROBOTS_DISALLOWED``."""

    def process_request_2(self, rp: RobotParser | None, request: Request) -> None:
        if rp is None:
            return
        useragent: str | bytes = self._robotstxt_useragent or request.headers.get(
            b"User-Agent", self._default_useragent
        ) or self._default_useragent
        if not rp.allowed(request.url, useragent):
            self._stats.inc_value("robotstxt/forbidden")
            agent = useragent.decode("latin-1") if isinstance(useragent, bytes) else useragent
            raise RobotsDisallowedError(f"the site's robots.txt disallows this URL for {agent!r}")
