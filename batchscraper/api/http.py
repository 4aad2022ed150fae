"""The API's resource base: JSON in and out, errors as ``{"error": {...}}``, work off the reactor.

Handlers are ``async def handle_<METHOD>(request)`` methods returning a
:class:`JsonResponse` (or None when they finished the request themselves, as
the NDJSON stream does). Blocking calls inside them go through
``deferToThread``, so a slow query never stalls Scrapyd.

:class:`GatedRequest` is the request class of the whole Scrapyd site: a body
is admitted (by :class:`BodyGate`) before any of it is read.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from pymongo.errors import ConnectionFailure
from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from batchscraper.api.auth import ApiKeys, ScrapydAuth
from batchscraper.api.submit import too_large
from batchscraper.api.views import json_default
from batchscraper.exceptions import (
    AuthenticationError,
    BatchError,
    BatchInputError,
    BatchNotFoundError,
    MethodNotAllowedError,
    ServiceUnavailableError,
)

if TYPE_CHECKING:
    from batchscraper.api.app import BatchApi

logger = logging.getLogger(__name__)

JSON_TYPE = b"application/json"
ERROR_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


@dataclass
class JsonResponse:
    """A JSON answer: body, HTTP status, extra headers."""

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class ApiResource(Resource):
    """Base of the batch API's resources."""

    key_required = True  # mounted at the top: bodies sent to it need a key (see BodyGate)

    def __init__(self, api: BatchApi) -> None:
        super().__init__()
        self.api = api

    def render(self, request: Any) -> Any:
        method = request.method.decode("ascii", "replace").upper()
        handler: Callable[..., Any] | None = getattr(
            self, f"handle_{'GET' if method == 'HEAD' else method}", None
        )
        if handler is None:
            allowed = ", ".join(self.allowed_methods())
            error = MethodNotAllowedError(f"{method} is not allowed here; allowed: {allowed}")
            send_error(Failure(error), request, {"Allow": allowed})
            return NOT_DONE_YET
        d = defer.ensureDeferred(handler(request))
        d.addCallback(_send_response, request)
        d.addErrback(send_error, request)
        return NOT_DONE_YET

    def allowed_methods(self) -> list[str]:
        return sorted(name[len("handle_") :] for name in dir(self) if name.startswith("handle_"))

    def getChild(self, path: bytes, request: Any) -> Any:
        """Nothing lies below this path (a trailing slash aside): a JSON 404."""
        return self if path == b"" else NotFound(self.api)

    def caller(self, request: Any) -> Any:
        """The authenticated caller (401 otherwise)."""
        return self.api.keys.identify(request)

    def base(self, request: Any) -> str:
        """The path prefix a reverse proxy announces (Scrapyd's ``prefix_header``)."""
        return self.api.base(request)


class NotFound(ApiResource):
    """Any path of the API that names no endpoint."""

    def render(self, request: Any) -> Any:
        send_error(Failure(BatchNotFoundError("no such endpoint")), request)
        return NOT_DONE_YET

    def getChild(self, path: bytes, request: Any) -> Any:
        return self


def query_int(request: Any, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high]; 400 otherwise."""
    values = request.args.get(name.encode())
    if not values:
        return default
    text = values[0].decode("latin-1")
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise BatchInputError(f"{name}: must be an integer from {low} to {high}, got {text!r}")
    return int(text)


def query_error_code(request: Any) -> str | None:
    """The ``error_code`` filter (an error code such as ``HTTP_ERROR``); 400 when malformed."""
    values = request.args.get(b"error_code")
    if not values:
        return None
    text = values[0].decode("latin-1")
    if not ERROR_CODE.fullmatch(text):
        raise BatchInputError(f"error_code: an error code such as HTTP_ERROR, got {text!r}")
    return text


def query_choice(request: Any, name: str, choices: tuple[str, ...]) -> str | None:
    """A query parameter that must be one of ``choices`` (None when absent); 400 otherwise."""
    values = request.args.get(name.encode())
    if not values:
        return None
    text = values[0].decode("latin-1")
    if text not in choices:
        raise BatchInputError(f"{name}: must be one of {list(choices)}, got {text!r}")
    return text


def write_json(request: Any, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    """Finish ``request`` with a JSON body (unless the client has gone)."""
    if request.finished or getattr(request, "_disconnected", False):
        return
    payload = json.dumps(body, default=json_default, separators=(",", ":")).encode()
    request.setResponseCode(status)
    request.setHeader(b"content-type", JSON_TYPE)
    request.setHeader(b"cache-control", b"no-store")
    for name, value in (headers or {}).items():
        request.setHeader(name.encode(), value.encode())
    request.setHeader(b"content-length", str(len(payload)).encode())
    request.write(payload)
    request.finish()


def error_body(error: BatchError) -> dict[str, Any]:
    """The public error shape."""
    return {"error": {"code": error.code, "message": error.message, "details": error.details}}


def error_headers(error: BatchError) -> dict[str, str]:
    """Headers an error answer carries besides its JSON body: a 401 names the scheme."""
    return {"WWW-Authenticate": 'Bearer realm="batchscraper"'} if error.http_status == 401 else {}


def send_error(failure: Failure, request: Any, headers: dict[str, str] | None = None) -> None:
    """Answer with the error's status and ``{"error": {code, message, details}}``."""
    error = failure.value
    if isinstance(error, ConnectionFailure):
        logger.warning("MongoDB unreachable: %s", error)
        error = ServiceUnavailableError("the database is unreachable; try again")
    if not isinstance(error, BatchError):
        logger.error("Unexpected error in %s %s:\n%s", request.method.decode(),
                     request.uri.decode("latin-1"), failure.getTraceback())
        error = BatchError("internal error; see the Scrapyd log")
    write_json(request, error.http_status, error_body(error), {**(headers or {}),
                                                             **error_headers(error)})


def _send_response(response: JsonResponse | None, request: Any) -> None:
    if response is not None:
        write_json(request, response.status, response.body, response.headers)


@implementer(IPushProducer)
class Backpressure:
    """Lets a streaming handler wait while the client is not reading."""

    def __init__(self) -> None:
        self._resumed: defer.Deferred[None] | None = None
        self.stopped = False

    def pauseProducing(self) -> None:
        if self._resumed is None:
            self._resumed = defer.Deferred()

    def resumeProducing(self) -> None:
        resumed, self._resumed = self._resumed, None
        if resumed is not None:
            resumed.callback(None)

    def stopProducing(self) -> None:
        self.stopped = True
        self.resumeProducing()

    async def wait(self) -> None:
        if self._resumed is not None:
            await self._resumed


# -- request bodies: admitted before they are read ----------------------------------


@dataclass(frozen=True)
class Refusal:
    """The answer to a request whose body is not read."""

    status: int
    body: bytes
    headers: dict[str, str]

    @classmethod
    def of(cls, error: BatchError) -> Refusal:
        """The API's error answer (same body and headers as :func:`send_error`)."""
        body = json.dumps(error_body(error), separators=(",", ":")).encode()
        headers = {"Content-Type": JSON_TYPE.decode(), "Cache-Control": "no-store"}
        return cls(error.http_status, body, {**headers, **error_headers(error)})


# what Scrapyd's basic auth guard (twisted.web.guard) answers
SCRAPYD_UNAUTHORIZED = Refusal(
    401, b"Unauthorized", {"Content-Type": "text/html", "WWW-Authenticate": 'basic realm="Scrapyd"'}
)


@dataclass(frozen=True)
class BodyGate:
    """Which request bodies are read at all, decided from the request line and headers.

    Twisted reads a whole body (into a temporary file past 100 KB) before any
    resource sees the request, so a key check or a 413 in a resource comes
    after a caller without a key has filled the disk. Here: a body sent to
    the API needs a key (where its resource needs one) and at most
    ``max_body_bytes``; a body sent to Scrapyd's own endpoints needs its basic
    auth (then any size: eggs). Requests without a body are not looked at.
    """

    keys: ApiKeys
    scrapyd_auth: ScrapydAuth
    max_body_bytes: int
    linger_seconds: float  # how long what follows a refusal is read (and dropped)
    api_paths: frozenset[bytes]  # first path segments the API serves (`batches`, ...)
    keyed_paths: frozenset[bytes]  # those of them that need an API key

    def refusal(self, request: Any, segment: bytes, length: int | None) -> Refusal | None:
        """What the request gets instead of having its body read; None: read it."""
        if segment not in self.api_paths:
            if self.scrapyd_auth.enabled and not self.scrapyd_auth.accepts(request):
                return SCRAPYD_UNAUTHORIZED
            return None
        try:
            if segment in self.keyed_paths:
                self.keys.identify(request)
        except AuthenticationError as exc:
            return Refusal.of(exc)
        if length is not None and length > self.max_body_bytes:
            return self.too_large()
        return None

    def body_limit(self, segment: bytes) -> int | None:
        """Bytes of body read at most (a body without a length is cut off there)."""
        return self.max_body_bytes if segment in self.api_paths else None

    def too_large(self) -> Refusal:
        return Refusal.of(too_large(self.max_body_bytes))


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

    def __init__(self, channel: Any, *args: Any, gate: BodyGate, **kwargs: Any) -> None:
        super().__init__(channel, *args, **kwargs)
        self.gate = gate
        self.refused = False
        self.body_limit: int | None = None
        self.body_read = 0
        self.linger: Any = None  # the delayed close of a refused request's connection

    def gotLength(self, length: int | None) -> None:
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

    def _refuse(self, refusal: Refusal) -> None:
        self.refused = True
        channel: Any = self.channel
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
