"""The front door of the Scrapyd site: which request bodies are read at all.

Twisted reads a whole body (into a temporary file past 100 KB) before any
resource sees the request, so a key check, a 405 or a 413 in a resource comes
after a caller without credentials has filled the disk. :class:`GatedRequest`
is the request class of the whole site; its :class:`BodyGate` decides from
the request line and headers alone.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from twisted.python.failure import Failure
from twisted.web.server import Request

from batchscraper.api.auth import ApiKeys, ScrapydAuth
from batchscraper.api.http import JSON_TYPE, error_body, error_headers
from batchscraper.api.submit import too_large
from batchscraper.exceptions import AuthenticationError, BatchError, TooLargeError

if TYPE_CHECKING:
    from twisted.internet.base import DelayedCall
    from twisted.web.http import HTTPChannel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateRefusal:
    """The answer to a request whose body is not read."""

    status: int
    body: bytes
    headers: dict[str, str]

    @classmethod
    def of(cls, error: BatchError) -> GateRefusal:
        """The API's error answer (same body and headers as
        :func:`batchscraper.api.http.send_error`)."""
        body = json.dumps(error_body(error), separators=(",", ":")).encode()
        headers = {"Content-Type": JSON_TYPE.decode(), "Cache-Control": "no-store"}
        return cls(error.http_status, body, {**headers, **error_headers(error)})


# what Scrapyd's basic auth guard (twisted.web.guard) answers
SCRAPYD_UNAUTHORIZED = GateRefusal(
    401, b"Unauthorized", {"Content-Type": "text/html", "WWW-Authenticate": 'basic realm="Scrapyd"'}
)


@dataclass(frozen=True)
class BodyGate:
    """Which request bodies are read at all, decided from the request line and headers.

    A body sent to the API needs a key and at most ``max_body_bytes``; the
    API's paths that need no key (the dashboard, the OpenAPI document) take
    no body at all, so nobody without credentials gets one read. A body sent
    to Scrapyd's own endpoints needs its basic auth (then any size: eggs).
    Requests without a body are not looked at.
    """

    keys: ApiKeys
    scrapyd_auth: ScrapydAuth
    max_body_bytes: int
    linger_seconds: float  # how long what follows a refusal is read (and dropped)
    api_paths: frozenset[bytes]  # first path segments the API serves (`batches`, ...)
    keyed_paths: frozenset[bytes]  # those of them that need an API key; the rest take no body

    def refusal(self, request: Request, segment: bytes, length: int | None) -> GateRefusal | None:
        """What the request gets instead of having its body read; None: read it."""
        if segment not in self.api_paths:
            if self.scrapyd_auth.enabled and not self.scrapyd_auth.accepts(request):
                return SCRAPYD_UNAUTHORIZED
            return None
        if segment not in self.keyed_paths:  # no credentials asked, so no body taken
            path = segment.decode("latin-1")
            return GateRefusal.of(TooLargeError(f"/{path} takes no request body"))
        try:
            self.keys.identify(request)
        except AuthenticationError as exc:
            return GateRefusal.of(exc)
        if length is not None and length > self.max_body_bytes:
            return self.too_large()
        return None

    def body_limit(self, segment: bytes) -> int | None:
        """Bytes of body read at most (a body without a length is cut off there)."""
        return self.max_body_bytes if segment in self.api_paths else None

    def too_large(self) -> GateRefusal:
        return GateRefusal.of(too_large(self.max_body_bytes))


class GatedRequest(Request):
    """A request whose body a :class:`BodyGate` admits before any of it is stored.

    A refused request is answered as soon as its headers are in (no ``100
    Continue``); a body without a length is refused the same way once it
    passes the limit. What the client still sends is dropped unstored, and
    the connection is closed when the body is complete or after
    ``linger_seconds`` (``BATCH_API_LINGER_SECONDS``), whichever comes first:
    closing at once would make most clients, busy sending, miss the answer.
    The request line is still the channel's own state then (the request
    object gets it only once the whole body is in).
    """

    def __init__(self, channel: HTTPChannel, *args: Any, gate: BodyGate, **kwargs: Any) -> None:
        super().__init__(channel, *args, **kwargs)
        self.gate = gate
        self.refused = False
        self.body_limit: int | None = None
        self.body_read = 0
        # the delayed close of a refused request's connection
        self.linger: DelayedCall | None = None

    def gotLength(self, length: int | None) -> None:
        # the request line is HTTPChannel's private state, which mypy infers as a Request
        channel: Any = self.channel
        if length != 0:
            segment = _first_segment(channel._path)
            refusal = self.gate.refusal(self, segment, length)
            if refusal is not None:
                self._refuse(refusal)
                return
            self.body_limit = self.gate.body_limit(segment)
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return
        self.body_read += len(data)
        if self.body_limit is not None and self.body_read > self.body_limit:
            if self.content is not None:
                self.content.close()  # a temporary file: gone with it
                self.content = None
            self._refuse(self.gate.too_large())
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self.refused:
            super().requestReceived(command, path, version)
        elif self.linger is not None and self.linger.active():  # answered; the body is over
            self.linger.cancel()
            self.channel.loseConnection()

    def connectionLost(self, reason: Failure) -> None:
        if self.linger is not None and self.linger.active():
            self.linger.cancel()
        super().connectionLost(reason)

    def _refuse(self, refusal: GateRefusal) -> None:
        self.refused = True
        channel: Any = self.channel  # (its request line: see gotLength)
        self.method, self.uri, self.clientproto = channel._command, channel._path, channel._version
        self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" for a refused body
        self.setResponseCode(refusal.status)
        for name, value in refusal.headers.items():
            self.setHeader(name, value)
        self.setHeader("Content-Length", str(len(refusal.body)))
        self.setHeader("Connection", "close")
        self.write(refusal.body)
        self.linger = channel.callLater(self.gate.linger_seconds, channel.loseConnection)
        logger.info("Refused the body of %s %s: HTTP %d", self.method.decode("latin-1"),
                    self.uri.decode("latin-1")[:200], refusal.status)


def _first_segment(target: bytes) -> bytes:
    """The first segment of a request target's path, as Twisted's resource traversal sees it."""
    path = target.split(b"?", 1)[0]
    return unquote_to_bytes(path[1:].split(b"/", 1)[0])
