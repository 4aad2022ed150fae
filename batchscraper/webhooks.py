"""Signed webhooks: Standard Webhooks signing, the persisted outbox, and its delivery.

A ``batch.completed`` event is written to the ``webhook_outbox`` collection by
the store, in the same step that gives the batch its final status (see
:meth:`batchscraper.store.BatchStore.finalize_batch`), so it can be neither
lost nor written twice. :class:`WebhookDelivery` runs inside the Scrapyd
process (:mod:`batchscraper.api.delivery`): it sends due events, signed per https://www.standardwebhooks.com
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64>``),
and retries with exponential backoff until the receiver answers 2xx. The
outbox lives in MongoDB, so pending deliveries survive a restart of Scrapyd.
Webhook URLs pass the crawl's SSRF guard: as written at submit, and with the
address they resolve to at each delivery (a blocked target fails the event
at once, with ``FETCH_BLOCKED``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import TypedDict

from scrapy.settings import BaseSettings

from batchscraper.downloadermiddlewares.ssrf import (
    AddressPolicy,
    FetchBlockedError,
    IPAddress,
)
from batchscraper.exceptions import InvalidWebhookError, WebhookVerificationError
from batchscraper.jsontypes import JSONObject

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
MIN_SECRET_BYTES = 16
SIGNATURE_VERSION = "v1"
BATCH_COMPLETED = "batch.completed"
DEFAULT_TOLERANCE = 300  # seconds a receiver accepts between webhook-timestamp and its clock


# -- signing -------------------------------------------------------------------


def new_secret() -> str:
    """A fresh signing secret, ``whsec_<base64 of 24 random bytes>``."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_`` secret; ValueError when it is not one."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"secret must look like {SECRET_PREFIX}<base64>")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("secret: the part after whsec_ is not base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"secret must hold at least {MIN_SECRET_BYTES} bytes")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signed_headers(
    secret: str, msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for one delivery attempt."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, msg_id, stamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> JSONObject:
    """Check a received webhook and return its decoded payload.

    ``body`` is the raw request body (a ``str`` is taken as its UTF-8 text);
    ``headers`` may use any capitalization. Raises
    :class:`~batchscraper.exceptions.WebhookVerificationError` when a header
    is missing, the timestamp is further than ``tolerance`` seconds from
    ``now``, or no ``v1`` signature matches.
    """
    if isinstance(body, str):
        body = body.encode("utf-8")
    lowered = {key.lower(): value for key, value in headers.items()}
    try:
        msg_id = lowered["webhook-id"]
        stamp = int(lowered["webhook-timestamp"])
        offered = lowered["webhook-signature"].split()
    except (KeyError, ValueError):
        raise WebhookVerificationError("missing or malformed webhook-* headers") from None
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance")
    try:
        expected = sign(secret, msg_id, stamp, body)
    except ValueError as exc:
        raise WebhookVerificationError(str(exc)) from None
    if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
        raise WebhookVerificationError("no signature matches")
    try:
        payload: JSONObject = json.loads(body)  # signed: an outbox_event body
    except ValueError:
        raise WebhookVerificationError("body is not JSON") from None
    return payload


# -- targets: the SSRF guard of the crawl applies to webhook URLs too ------------


def check_webhook_target(url: str, policy: AddressPolicy) -> None:
    """At submit, without DNS: 422 ``INVALID_WEBHOOK`` for a URL the guard refuses as written."""
    try:
        policy.check_url(url)
    except FetchBlockedError as exc:
        raise InvalidWebhookError(f"webhook.url: {exc.message}") from None


def webhook_address(url: str, policy: AddressPolicy) -> IPAddress:
    """At delivery (blocking DNS): the checked address to connect to; FetchBlockedError if none.

    The connection goes to this very address, so a second DNS answer cannot
    send it elsewhere (DNS rebinding). OSError when the name does not resolve.
    """
    host, port = policy.check_url(url)
    return policy.addresses_to_connect(host, port)[0]


# -- events --------------------------------------------------------------------


class OutboxEvent(TypedDict):
    """A ``webhook_outbox`` document as written: one event to deliver, and its progress."""

    _id: str  # the webhook-id
    type: str
    batch_id: str
    url: str
    secret: str
    body: str  # the JSON payload, as signed and sent
    status: str  # pending, delivered or failed
    attempts: int
    created_at: dt.datetime
    next_attempt_at: dt.datetime
    lease_until: dt.datetime


def _iso(value: object) -> object:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def batch_links(batch_id: str, base: str = "") -> dict[str, str]:
    """Where a batch and its records are, relative to the API root unless ``base`` is given."""
    own = f"{base}/batches/{batch_id}"
    return {"self": own, "items": f"{own}/items", "retry": f"{own}/retry"}


def batch_completed_event(batch: Mapping[str, object]) -> OutboxEvent | None:
    """The outbox document announcing that ``batch`` reached its final status.

    One per run of the batch to a final status (``finished_runs`` counts them),
    so the id is deterministic and a duplicate write fails on ``_id``.
    None when the batch has no webhook, or its ``events`` leave this one out.
    """
    webhook = batch.get("webhook")
    if not webhook or not isinstance(webhook, Mapping):
        return None
    events = webhook.get("events") or [BATCH_COMPLETED]
    if not isinstance(events, Container) or BATCH_COMPLETED not in events:
        return None
    msg_id = f"msg_{batch['_id']}_{batch.get('finished_runs', 1)}"
    return outbox_event(msg_id, BATCH_COMPLETED, str(batch["_id"]), webhook, {
        "batch_id": batch["_id"],
        "status": batch["status"],
        "counters": batch["counters"],
        "created_at": _iso(batch.get("created_at")),
        "finished_at": _iso(batch.get("finished_at")),
        "error": batch.get("error"),
        "monitors": batch.get("monitors"),
        "links": batch_links(str(batch["_id"])),
    })


def outbox_event(
    msg_id: str, event: str, batch_id: str, webhook: Mapping[str, object],
    data: Mapping[str, object],
) -> OutboxEvent:
    """An outbox document for ``event``, its payload with the webhook's ``metadata``."""
    now = dt.datetime.now(dt.UTC)
    payload = {"type": event, "timestamp": now.isoformat(), "metadata": webhook.get("metadata"),
               "data": data}
    return {
        "_id": msg_id,
        "type": event,
        "batch_id": batch_id,
        "url": str(webhook["url"]),
        "secret": str(webhook["secret"]),
        "body": json.dumps(payload, separators=(",", ":"), default=str),
        "status": "pending",
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
        "lease_until": now,
    }


# -- outbox --------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookConfig:
    """How the outbox is worked (``BATCH_WEBHOOK_*`` settings)."""

    poll_interval: float
    timeout: float
    max_attempts: int
    retry_base: float
    retry_max: float
    history: int
    max_answer_bytes: int

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> WebhookConfig:
        return cls(
            poll_interval=settings.getfloat("BATCH_WEBHOOK_POLL_INTERVAL"),
            timeout=settings.getfloat("BATCH_WEBHOOK_TIMEOUT"),
            max_attempts=settings.getint("BATCH_WEBHOOK_MAX_ATTEMPTS"),
            retry_base=settings.getfloat("BATCH_WEBHOOK_RETRY_BASE"),
            retry_max=settings.getfloat("BATCH_WEBHOOK_RETRY_MAX"),
            history=settings.getint("BATCH_WEBHOOK_HISTORY"),
            max_answer_bytes=settings.getint("BATCH_WEBHOOK_MAX_ANSWER_BYTES"),
        )

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt."""
        return float(min(self.retry_base * 2 ** (attempts - 1), self.retry_max))
