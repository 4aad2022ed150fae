"""Delivery of the webhook outbox from inside the Scrapyd process (a Twisted service).

Each attempt resolves the target and checks it with the SSRF guard first,
then connects to exactly the address it checked (DNS rebinding); a refused
target fails the event at once with ``FETCH_BLOCKED``, without retries.
The receiver's answer is read up to ``BATCH_WEBHOOK_MAX_ANSWER_BYTES`` and
within ``BATCH_WEBHOOK_TIMEOUT``, then the connection is dropped: an endless
or trickling answer can neither grow Scrapyd's memory nor hold an attempt.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from io import BytesIO
from typing import Any, NamedTuple, cast

from twisted.internet import defer, reactor, threads
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import URI, Agent, BrowserLikePolicyForHTTPS, FileBodyProducer
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from batchscraper.api.periodic import PeriodicService
from batchscraper.downloadermiddlewares.ssrf import (
    ALLOW_ALL,
    AddressPolicy,
    FetchBlockedError,
    IPAddress,
)
from batchscraper.jsontypes import Document
from batchscraper.store.base import document_id
from batchscraper.store.outbox import WebhookOutbox
from batchscraper.webhooks import signed_headers, webhook_address

logger = logging.getLogger(__name__)

USER_AGENT = b"batchscraper-webhooks/1"
ERROR_TEXT_CHARS = 300


class WebhookDelivery(PeriodicService):
    """Sends due outbox events from the Scrapyd process, every ``poll_interval`` seconds."""

    name = "batchscraper-webhooks"
    what = "Webhook outbox scan"

    def __init__(self, outbox: WebhookOutbox, policy: AddressPolicy = ALLOW_ALL) -> None:
        super().__init__(outbox.config.poll_interval)
        self.outbox = outbox
        self.config = outbox.config
        self.policy = policy
        self.tls = BrowserLikePolicyForHTTPS()

    async def scan(self) -> None:
        events = await threads.deferToThread(self.outbox.claim_due)
        await defer.DeferredList([defer.ensureDeferred(self.send(e)) for e in events])

    async def send(self, event: Document) -> str:
        """One delivery attempt of ``event``, recorded; returns the event's new status."""
        body = cast(str, event["body"]).encode()
        headers = signed_headers(cast(str, event["secret"]), document_id(event), body)
        started = time.monotonic()
        attempt: dict[str, object] = {"at": dt.datetime.now(dt.UTC), "status_code": None}
        try:
            url = cast(str, event["url"])
            address = await threads.deferToThread(webhook_address, url, self.policy)
            exchange = defer.ensureDeferred(self._exchange(url, address, headers, body))
            answer = await exchange.addTimeout(self.config.timeout, reactor)
            attempt.update(answer.attempt_fields())
        except FetchBlockedError as exc:  # never sent, and never retried
            attempt.update(ok=False, retryable=False, error=str(exc))
        except Exception as exc:  # any transport failure is one failed attempt
            attempt["ok"] = False
            attempt["error"] = f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_CHARS]
        attempt["duration_ms"] = int((time.monotonic() - started) * 1000)
        status = await threads.deferToThread(self.outbox.record_attempt, event, attempt)
        if attempt["ok"]:
            logger.info("Webhook %s delivered to %s", event["_id"], event["url"])
        else:
            logger.warning(
                "Webhook %s to %s failed (attempt %d, now %s): %s",
                event["_id"], event["url"], cast(int, event["attempts"]) + 1, status,
                attempt["error"],
            )
        return status

    async def _exchange(
        self, url: str, address: IPAddress, headers: dict[str, str], body: bytes
    ) -> WebhookAnswer:
        raw = Headers({key.encode(): [value.encode()] for key, value in headers.items()})
        raw.setRawHeaders(b"content-type", [b"application/json"])
        raw.setRawHeaders(b"user-agent", [USER_AGENT])
        producer = cast(IBodyProducer, FileBodyProducer(BytesIO(body)))
        agent = Agent.usingEndpointFactory(
            reactor, PinnedEndpoints(address, self.tls, self.config.timeout)
        )
        # Any: mypy reads IResponse's zope methods as taking no self
        response: Any = await agent.request(b"POST", url.encode(), raw, producer)
        reader = CappedBody(self.config.max_answer_bytes)
        response.deliverBody(reader)
        body = await reader.finished
        return WebhookAnswer(response.code, body, reader.cut)


class WebhookAnswer(NamedTuple):
    """A receiver's answer: its status, the first bytes of its body, and whether it was cut."""

    code: int
    body: bytes
    cut: bool

    def attempt_fields(self) -> dict[str, object]:
        """What the attempt record keeps: a 2xx status is a delivery, whatever the body.

        A refusal's ``error`` is its status; what the receiver said is kept apart,
        as ``answer`` (its first bytes), never taken for the error itself.
        """
        ok = 200 <= self.code < 300
        fields: dict[str, object] = {"status_code": self.code, "ok": ok}
        if not ok:
            fields["error"] = f"HTTP {self.code}"
            if self.body:
                fields["answer"] = self.body[:ERROR_TEXT_CHARS].decode("utf-8", "replace")
        if self.cut:
            fields["truncated"] = True
        return fields


class CappedBody(Protocol):
    """Keeps the first ``limit`` bytes of an answer's body, then drops the connection.

    ``readBody`` keeps a body however long it is, and its cancel cannot reach
    the connection under the Agent's transport proxy. ``finished`` fires with
    the bytes kept, however the body ends: the status line has arrived, and it
    is what counts. Cancelling it (the attempt's timeout, during a trickling
    body) drops the connection and keeps what arrived.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.cut = False
        self.finished: defer.Deferred[bytes] = defer.Deferred(lambda _: self._cut_off())

    def dataReceived(self, data: bytes) -> None:
        if self.finished.called:
            return  # bytes that were already read when the connection was dropped
        self.chunks.append(data[: self.limit - self.size])
        self.size += len(data)
        if self.size > self.limit:
            self._cut_off()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # ResponseDone, PotentialDataLoss (no Content-Length: ended by closing) or data loss
        self._finish()

    def _cut_off(self) -> None:
        self.cut = True
        self._finish()
        # abortConnection, as Scrapy's download handler does: the Agent's transport
        # proxy only offers loseConnection, which over TLS waits for the receiver
        producer = getattr(self.transport, "_producer", None)
        if producer is not None:
            producer.abortConnection()

    def _finish(self) -> None:
        if not self.finished.called:
            self.finished.callback(b"".join(self.chunks))


@implementer(IAgentEndpointFactory)
class PinnedEndpoints:
    """Connections to one checked address, whatever the URL's host resolves to now.

    The Host header and, for https, the certificate check still use the URL's host.
    """

    def __init__(self, address: IPAddress, tls: BrowserLikePolicyForHTTPS, timeout: float) -> None:
        self.address = address
        self.tls = tls
        self.timeout = timeout

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        tcp = TCP6ClientEndpoint if self.address.version == 6 else TCP4ClientEndpoint
        # (it provides IStreamClientEndpoint: mypy has no zope plugin to see that)
        endpoint = cast(
            IStreamClientEndpoint, tcp(reactor, str(self.address), uri.port, timeout=self.timeout)
        )
        if uri.scheme == b"https":
            return wrapClientTLS(self.tls.creatorForNetloc(uri.host, uri.port), endpoint)
        return endpoint
