"""Per-domain circuit breaker: a domain that answers mostly 429/5xx is slowed, then left alone.

Retries with backoff and AutoThrottle still send a failing site its share of
a batch. The breaker watches each download slot (a domain) over its last
``BATCH_BREAKER_WINDOW`` answers; when at least ``BATCH_BREAKER_ERROR_RATE``
of them are errors, that is a strike: the slot's delay goes up (from
``BATCH_BREAKER_DELAY``, doubled per strike) and the window starts over at
the slower pace. At ``BATCH_BREAKER_STRIKES`` strikes the breaker opens: the
domain's remaining requests are not sent, and their items fail with the
retryable code ``DOMAIN_CIRCUIT_OPEN`` (``POST /batches/{id}/retry`` or a
re-run tries them again later). A healthy window closes a slowed breaker.

The same per-domain counters (requests, errors, delay, breaker state) are
what :class:`batchscraper.extensions.domains.DomainHealthWriter` writes on
the batch document.
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from scrapy import Request
from scrapy.core.downloader import Slot
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http import Response
from scrapy.settings import BaseSettings

from batchscraper.exceptions import DomainCircuitOpenError, FetchError

if TYPE_CHECKING:
    from batchscraper.store.results import DomainHealthEntry

logger = logging.getLogger(__name__)

CLOSED, SLOWED, OPEN = "closed", "slowed", "open"


@dataclass(frozen=True)
class BreakerConfig:
    """The ``BATCH_BREAKER_*`` settings."""

    enabled: bool
    error_codes: frozenset[int]
    window: int
    min_requests: int
    error_rate: float
    delay: float
    max_delay: float
    strikes: int
    max_domains: int

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> BreakerConfig:
        window = settings.getint("BATCH_BREAKER_WINDOW")
        codes = settings.getlist("BATCH_BREAKER_HTTP_CODES")
        return cls(
            enabled=settings.getbool("BATCH_BREAKER_ENABLED"),
            error_codes=frozenset(int(code) for code in codes),
            window=window,
            min_requests=min(settings.getint("BATCH_BREAKER_MIN_REQUESTS"), window),
            error_rate=settings.getfloat("BATCH_BREAKER_ERROR_RATE"),
            delay=settings.getfloat("BATCH_BREAKER_DELAY"),
            max_delay=settings.getfloat("BATCH_BREAKER_MAX_DELAY"),
            strikes=settings.getint("BATCH_BREAKER_STRIKES"),
            max_domains=settings.getint("BATCH_BREAKER_MAX_DOMAINS"),
        )


@dataclass
class DomainState:
    """One domain's counters and breaker state in this process."""

    window: int
    requests: int = 0
    errors: int = 0
    strikes: int = 0
    state: str = CLOSED
    delay: float = 0.0  # the download slot's delay after the last answer
    delay_before: float | None = None  # the slot's delay before the first strike
    recent: deque[bool] = field(init=False)  # True: an error

    def __post_init__(self) -> None:
        self.recent = deque(maxlen=self.window)

    def health(self, domain: str) -> DomainHealthEntry:
        """The entry written on the batch document."""
        return {
            "domain": domain,
            "requests": self.requests,
            "errors": self.errors,
            "delay": round(self.delay, 3),
            "breaker": self.state,
        }


class DomainHealth:
    """Every domain's state in one crawl, least recently seen dropped past ``max_domains``."""

    def __init__(self, window: int, max_domains: int) -> None:
        self.window = window
        self.max_domains = max_domains
        self.domains: OrderedDict[str, DomainState] = OrderedDict()

    def get(self, domain: str) -> DomainState:
        state = self.domains.get(domain)
        if state is None:
            state = self.domains[domain] = DomainState(self.window)
            if len(self.domains) > self.max_domains:
                self.domains.popitem(last=False)
        else:
            self.domains.move_to_end(domain)
        return state

    def top(self, count: int) -> list[DomainHealthEntry]:
        """Health entries of the ``count`` domains with the most requests."""
        ranked = sorted(self.domains.items(), key=lambda pair: pair[1].requests, reverse=True)
        return [state.health(domain) for domain, state in ranked[:count]]


_HEALTH: weakref.WeakKeyDictionary[Crawler, DomainHealth] = weakref.WeakKeyDictionary()


def domain_health(crawler: Crawler) -> DomainHealth | None:
    """The crawl's :class:`DomainHealth`, shared by the breaker and the writer (None: off)."""
    return _HEALTH.get(crawler)


class CircuitBreakerMiddleware:
    """Downloader middleware: counts answers per domain, slows and then stops failing domains.

    It sits between the retry middleware and the downloader, so it sees every
    attempt's raw status, and an open breaker also stops queued retries.
    """

    def __init__(self, crawler: Crawler, config: BreakerConfig) -> None:
        self.crawler = crawler
        self.config = config
        self.health = _HEALTH[crawler] = DomainHealth(config.window, config.max_domains)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CircuitBreakerMiddleware:
        config = BreakerConfig.from_settings(crawler.settings)
        if not config.enabled:
            raise NotConfigured
        return cls(crawler, config)

    def process_request(self, request: Request) -> None:
        domain = self._slot_key(request)
        if self.health.get(domain).state == OPEN:
            self._inc("refused")
            raise DomainCircuitOpenError(
                f"{domain} answered mostly errors; its circuit breaker is open"
            )

    def process_response(self, request: Request, response: Response) -> Response:
        self._record(request, response.status in self.config.error_codes)
        return response

    def process_exception(self, request: Request, exception: Exception) -> None:
        # refusals (ours, the SSRF guard's, robots.txt) are not the site's errors
        if not isinstance(exception, FetchError | IgnoreRequest):
            self._record(request, True)

    def _record(self, request: Request, error: bool) -> None:
        domain = self._slot_key(request)
        state = self.health.get(domain)
        state.requests += 1
        state.errors += error
        state.recent.append(error)
        slot = self._slot(domain)
        if slot is not None:
            state.delay = slot.delay
        if state.state == OPEN or len(state.recent) < self.config.min_requests:
            return
        rate = sum(state.recent) / len(state.recent)
        if rate >= self.config.error_rate:
            self._strike(domain, state, rate, slot)
        elif state.state == SLOWED:
            self._recover(domain, state, slot)

    def _strike(self, domain: str, state: DomainState, rate: float, slot: Slot | None) -> None:
        state.strikes += 1
        state.recent.clear()  # the next judgement is made at the new pace
        if state.strikes >= self.config.strikes:
            state.state = OPEN
            self._inc("opened")
            logger.warning(
                "Circuit breaker open for %s: %.0f%% errors after %d slow-downs; "
                "its remaining items fail with DOMAIN_CIRCUIT_OPEN",
                domain, rate * 100, state.strikes - 1,
            )
            return
        if state.state == CLOSED:
            state.delay_before = slot.delay if slot is not None else 0.0
        state.state = SLOWED
        self._inc("slowed")
        if slot is not None:
            slot.delay = min(max(slot.delay * 2, self.config.delay), self.config.max_delay)
            state.delay = slot.delay
        logger.info("Slowing down %s: %.0f%% errors, delay now %.2fs", domain, rate * 100,
                    state.delay)

    def _recover(self, domain: str, state: DomainState, slot: Slot | None) -> None:
        state.state, state.strikes = CLOSED, 0
        if slot is not None and state.delay_before is not None:
            slot.delay = state.delay = state.delay_before
        logger.info("%s answers normally again", domain)

    def _slot_key(self, request: Request) -> str:
        assert self.crawler.engine is not None
        return str(self.crawler.engine.downloader.get_slot_key(request))

    def _slot(self, domain: str) -> Slot | None:
        assert self.crawler.engine is not None
        return self.crawler.engine.downloader.slots.get(domain)

    def _inc(self, metric: str) -> None:
        assert self.crawler.stats is not None
        self.crawler.stats.inc_value(f"batch/breaker/{metric}")
