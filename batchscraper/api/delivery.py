"""Delivery of the webhook outbox from inside the Scrapyd process (a Twisted service)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from io import BytesIO
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet import defer, reactor, task, threads
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer

from batchscraper.webhooks import WebhookOutbox, signed_headers

logger = logging.getLogger(__name__)

USER_AGENT = b"batchscraper-webhooks/1"
ERROR_TEXT_CHARS = 300


class WebhookDelivery(Service):
    """Sends due outbox events from the Scrapyd process, every ``poll_interval`` seconds."""

    name = "batchscraper-webhooks"

    def __init__(self, outbox: WebhookOutbox) -> None:
        self.outbox = outbox
        self.config = outbox.config
        self.agent = Agent(reactor)
        self.loop = task.LoopingCall(self.tick)

    def startService(self) -> None:
        super().startService()
        self.loop.start(self.config.poll_interval, now=True).addErrback(self._loop_failed)

    def stopService(self) -> None:
        super().stopService()
        if self.loop.running:
            self.loop.stop()

    def _loop_failed(self, failure: Any) -> None:
        logger.error("Webhook delivery stopped: %s", failure.getTraceback())

    async def _tick(self) -> None:
        events = await threads.deferToThread(self.outbox.claim_due)
        await defer.DeferredList([defer.ensureDeferred(self.send(e)) for e in events])

    def tick(self) -> defer.Deferred:
        """One scan of the outbox; errors are logged and the next scan runs as usual."""
        d = defer.ensureDeferred(self._tick())
        d.addErrback(lambda f: logger.warning("Webhook outbox scan failed: %s", f.value))
        return d

    async def send(self, event: dict[str, Any]) -> str:
        """One delivery attempt of ``event``, recorded; returns the event's new status."""
        body = event["body"].encode()
        headers = signed_headers(event["secret"], event["_id"], body)
        started = time.monotonic()
        attempt: dict[str, Any] = {"at": dt.datetime.now(dt.UTC), "status_code": None}
        try:
            exchange = defer.ensureDeferred(self._exchange(event["url"], headers, body))
            code, text = await exchange.addTimeout(self.config.timeout, reactor)
            attempt["status_code"] = code
            attempt["ok"] = 200 <= code < 300
            if not attempt["ok"]:
                attempt["error"] = text[:ERROR_TEXT_CHARS].decode("utf-8", "replace")
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
                event["_id"], event["url"], event["attempts"] + 1, status, attempt["error"],
            )
        return status

    async def _exchange(self, url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        raw = Headers({key.encode(): [value.encode()] for key, value in headers.items()})
        raw.setRawHeaders(b"content-type", [b"application/json"])
        raw.setRawHeaders(b"user-agent", [USER_AGENT])
        producer = cast(IBodyProducer, FileBodyProducer(BytesIO(body)))
        response = await self.agent.request(b"POST", url.encode(), raw, producer)
        return response.code, await readBody(response)
