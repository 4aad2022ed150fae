"""The API's resource base: JSON in and out, errors as ``{"error": {...}}``, work off the reactor.

Handlers are ``async def handle_<METHOD>(request)`` methods returning a
:class:`JsonResponse` (or None when they finished the request themselves, as
the NDJSON stream does). Blocking calls inside them go through
``deferToThread``, so a slow query never stalls Scrapyd. Which request bodies
are read at all is decided earlier, by :mod:`batchscraper.api.gate`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

from pymongo.errors import ConnectionFailure
from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from batchscraper.api.views import json_default
from batchscraper.exceptions import (
    BatchError,
    BatchInputError,
    BatchNotFoundError,
    MethodNotAllowedError,
    ServiceUnavailableError,
)

if TYPE_CHECKING:
    from batchscraper.api.app import BatchApi
    from batchscraper.api.auth import Caller

logger = logging.getLogger(__name__)

JSON_TYPE = b"application/json"
ERROR_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


class ErrorDetail(TypedDict):
    """The ``error`` of an error answer."""

    code: str
    message: str
    details: object  # a list of problems, each with its own code, or null


class ErrorBody(TypedDict):
    """An error answer: ``{"error": {code, message, details}}``."""

    error: ErrorDetail


@dataclass
class JsonResponse:
    """A JSON answer: body, HTTP status, extra headers."""

    body: object
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


# a resource's ``handle_<METHOD>(request)``
Handler = Callable[[Request], Coroutine[defer.Deferred[object], object, JsonResponse | None]]


class ApiResource(Resource):
    """Base of the batch API's resources."""

    # mounted at the top: bodies sent to it need a key; without one, none (see api.gate)
    key_required = True

    def __init__(self, api: BatchApi) -> None:
        super().__init__()
        self.api = api

    def render(self, request: Request) -> int:
        method = request.method.decode("ascii", "replace").upper()
        handler: Handler | None = getattr(
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

    def getChild(self, path: bytes, request: Request) -> Resource:
        """Nothing lies below this path (a trailing slash aside): a JSON 404."""
        return self if path == b"" else NotFound(self.api)

    def caller(self, request: Request) -> Caller:
        """The authenticated caller (401 otherwise)."""
        return self.api.keys.identify(request)

    def base(self, request: Request) -> str:
        """The path prefix a reverse proxy announces (Scrapyd's ``prefix_header``)."""
        return self.api.base(request)


class NotFound(ApiResource):
    """Any path of the API that names no endpoint."""

    def render(self, request: Request) -> int:
        send_error(Failure(BatchNotFoundError("no such endpoint")), request)
        return NOT_DONE_YET

    def getChild(self, path: bytes, request: Request) -> Resource:
        return self


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high]; 400 otherwise."""
    values = request.args.get(name.encode())
    if not values:
        return default
    text = values[0].decode("latin-1")
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise BatchInputError(f"{name}: must be an integer from {low} to {high}, got {text!r}")
    return int(text)


def query_error_code(request: Request) -> str | None:
    """The ``error_code`` filter (an error code such as ``HTTP_ERROR``); 400 when malformed."""
    values = request.args.get(b"error_code")
    if not values:
        return None
    text = values[0].decode("latin-1")
    if not ERROR_CODE.fullmatch(text):
        raise BatchInputError(f"error_code: an error code such as HTTP_ERROR, got {text!r}")
    return text


def query_text(request: Request, name: str, max_length: int) -> str:
    """A free-text query parameter (empty when absent); 400 past ``max_length`` characters."""
    values = request.args.get(name.encode())
    text = values[0].decode("utf-8", "replace") if values else ""
    if len(text) > max_length or not text.isprintable():
        raise BatchInputError(f"{name}: printable text of at most {max_length} characters")
    return text


def query_choice(request: Request, name: str, choices: tuple[str, ...]) -> str | None:
    """A query parameter that must be one of ``choices`` (None when absent); 400 otherwise."""
    values = request.args.get(name.encode())
    if not values:
        return None
    text = values[0].decode("latin-1")
    if text not in choices:
        raise BatchInputError(f"{name}: must be one of {list(choices)}, got {text!r}")
    return text


def write_json(
    request: Request, status: int, body: object, headers: dict[str, str] | None = None
) -> None:
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


def error_body(error: BatchError) -> ErrorBody:
    """The public error shape."""
    return {"error": {"code": error.code, "message": error.message, "details": error.details}}


def error_headers(error: BatchError) -> dict[str, str]:
    """Headers an error answer carries besides its JSON body: a 401 names the scheme."""
    return {"WWW-Authenticate": 'Bearer realm="batchscraper"'} if error.http_status == 401 else {}


def send_error(failure: Failure, request: Request, headers: dict[str, str] | None = None) -> None:
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


def _send_response(response: JsonResponse | None, request: Request) -> None:
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


NDJSON = "application/x-ndjson"


async def stream_ndjson(request: Request, next_lines: Callable[[], bytes | None],
                        what: str) -> None:
    """Answer 200 with NDJSON: ``next_lines()`` (run in a thread) until it returns None,
    pausing while the client is not reading; a failure cuts the stream off without the
    final chunk, so the client sees it is incomplete."""
    request.setResponseCode(200)
    request.setHeader(b"content-type", NDJSON.encode())
    request.setHeader(b"cache-control", b"no-store")
    pace = Backpressure()
    request.registerProducer(pace, True)
    try:
        while not pace.stopped:
            lines = await deferToThread(next_lines)
            if lines is None:
                break
            request.write(lines)
            await pace.wait()
    except Exception:
        logger.exception("NDJSON stream of %s broke off", what)
        request.unregisterProducer()
        request.loseConnection()
        return
    request.unregisterProducer()
    if not pace.stopped:
        request.finish()
