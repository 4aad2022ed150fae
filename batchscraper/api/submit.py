"""The body of ``POST /batches``: decoded, aliases resolved, webhook checked.

What the seed APIs call things is accepted too: ``fields`` (a field list) and
``extraction_schema`` for ``schema``, ``extraction_prompt`` for ``prompt``,
``webhook_url`` for ``webhook: {"url"}``, Spidra's ``output`` (``markdown``
adds that format), Runo's ``options.timeout_ms`` (for ``timeout_per_url``) and
``async_mode`` (``false``: answer synchronously when the batch is small), and
per-URL objects with ``mode`` and AlterLab's extraction keys (handled by
:func:`batchscraper.inputs.parse_urls`). URLs, schema, prompt
and options themselves are validated later by
:func:`batchscraper.inputs.parse_batch`, the parser the CLI uses.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, cast

from batchscraper.events import webhook_option_problems
from batchscraper.exceptions import (
    BatchInputError,
    InvalidWebhookError,
    TooLargeError,
    UnsupportedMediaTypeError,
)
from batchscraper.inputs import check_url
from batchscraper.inputs.labels import Labels, parse_labels
from batchscraper.jsontypes import Document, JSONObject, JSONValue
from batchscraper.webhooks import new_secret, secret_key

if TYPE_CHECKING:
    from twisted.web.server import Request

COMPARE_KEYS = ("compare_to", "ignore_fields")  # checked by batchscraper.api.compare

SCHEMA_NAMES = ("schema", "fields", "extraction_schema")
PROMPT_NAMES = ("prompt", "extraction_prompt")
WEBHOOK_NAMES = ("webhook", "webhook_url")
BODY_KEYS = {
    *SCHEMA_NAMES, *PROMPT_NAMES, *WEBHOOK_NAMES, "urls", "options", "rerun_of", "name", "tags",
    *COMPARE_KEYS, "monitors", "output", "async_mode",
}
OUTPUTS = ("json", "markdown")
MS_PER_SECOND = 1000
WEBHOOK_KEYS = {"url", "secret", "events", "metadata"}


@dataclass(frozen=True)
class Webhook:
    """Where ``batch.completed`` goes and the secret it is signed with."""

    url: str
    secret: str
    generated: bool  # the secret was made here: the 202 shows it, once
    events: list[str] | None = None  # None: batch.completed only (batchscraper.events)
    metadata: JSONObject | None = None  # echoed in every payload

    def options(self) -> dict[str, object]:
        """``events`` and ``metadata``, when given."""
        given = (("events", self.events), ("metadata", self.metadata))
        return {key: value for key, value in given if value is not None}

    def stored(self) -> Document:
        return {"url": self.url, "secret": self.secret, "status": None, "deliveries": [],
                **self.options()}


@dataclass(frozen=True)
class Submission:
    """A ``POST /batches`` body with aliases resolved; inputs not validated yet."""

    urls: JSONValue
    schema: JSONValue
    prompt: JSONValue
    options: JSONValue
    webhook: Webhook | None
    rerun_of: str | None
    labels: Labels
    fingerprint: str  # same body, same fingerprint: what Idempotency-Key compares
    compare_to: JSONValue = None
    ignore_fields: JSONValue = None
    monitors: JSONValue = None  # checked by batchscraper.monitors
    webhook_error: InvalidWebhookError | None = None  # refused with the request's other problems
    synchronous: bool = False  # Runo's ``async_mode: false``: answer with the results if small


def check_body_headers(request: Request, max_bytes: int) -> None:
    """Before the body is read: 413 from its announced length, 415 unless it is JSON.

    A body without Content-Type is taken as JSON; one that declares another
    type (a form, text) or a charset other than UTF-8 is refused.
    """
    length = request.getHeader(b"content-length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise too_large(max_bytes)
    if length in (None, b"0") and not request.getHeader(b"transfer-encoding"):
        return  # no body
    declared = request.getHeader(b"content-type")
    if declared is None:
        return
    media_type, _, params = declared.decode("latin-1").partition(";")
    media_type = media_type.strip().lower()
    charset = params.strip().lower().removeprefix("charset=").strip('"')
    if (media_type != "application/json" and not media_type.endswith("+json")) or (
        "charset=" in params.lower() and charset not in ("utf-8", "utf8")
    ):
        raise UnsupportedMediaTypeError(
            f"Content-Type {declared.decode('latin-1')[:100]!r}: send application/json (UTF-8)"
        )


def read_json_body(content: IO[bytes], max_bytes: int, *, allow_empty: bool = False) -> JSONValue:
    """Decode the request body; 413 past ``max_bytes``, 400 unless it is UTF-8 JSON.

    An empty body is None when ``allow_empty``. Nesting deeper than Python's
    recursion limit, integers longer than Python converts, and lone surrogates
    (which MongoDB cannot store) are 400 too.
    """
    content.seek(0)
    raw = content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise too_large(max_bytes)
    if allow_empty and not raw.strip():
        return None
    try:
        body = json.loads(raw.decode("utf-8-sig"))
        json.dumps(body, ensure_ascii=False).encode("utf-8")  # lone surrogates fail here
    except UnicodeError:
        raise BatchInputError("request body is not UTF-8 JSON (or holds lone surrogates)") from None
    except json.JSONDecodeError as exc:
        raise BatchInputError(
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise BatchInputError("request body nests too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise BatchInputError(f"request body is not usable JSON: {exc}"[:300]) from None
    return body


def too_large(max_bytes: int) -> TooLargeError:
    """413: the body is over the limit (said by its length, or found while reading it)."""
    return TooLargeError(f"request body larger than {max_bytes} bytes (BATCH_API_MAX_BODY_BYTES)")


def read_submission(body: JSONValue) -> Submission:
    """Resolve the aliases of a decoded ``POST /batches`` body (400 on a wrong shape)."""
    if not isinstance(body, dict):
        raise BatchInputError("request body must be a JSON object")
    unknown = set(body) - BODY_KEYS
    if unknown:
        raise BatchInputError(f"unknown fields {sorted(unknown)}; known: {sorted(BODY_KEYS)}")
    rerun_of = body.get("rerun_of")
    if rerun_of is not None and (not isinstance(rerun_of, str) or "urls" in body):
        raise BatchInputError("rerun_of: a batch id, given instead of urls")
    schema = _one_of(body, SCHEMA_NAMES)
    if "fields" in body and isinstance(schema, list):
        schema = [{"field": entry} if isinstance(entry, str) else entry for entry in schema]
    async_mode = body.get("async_mode")
    if async_mode is not None and not isinstance(async_mode, bool):
        raise BatchInputError("async_mode: must be true or false")
    try:
        webhook, webhook_error = _webhook(_one_of(body, WEBHOOK_NAMES)), None
    except InvalidWebhookError as exc:
        webhook, webhook_error = None, exc
    return Submission(
        urls=body.get("urls"),
        schema=schema,
        prompt=_one_of(body, PROMPT_NAMES),
        options=_options(body.get("options"), body.get("output")),
        synchronous=async_mode is False,
        webhook=webhook,
        webhook_error=webhook_error,
        rerun_of=rerun_of,
        labels=parse_labels(body.get("name"), body.get("tags")),
        fingerprint=request_fingerprint(body),
        compare_to=body.get("compare_to"),
        ignore_fields=body.get("ignore_fields"),
        monitors=body.get("monitors"),
    )


def request_fingerprint(body: object) -> str:
    """Same body, same fingerprint: what an Idempotency-Key's replay compares."""
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def _options(options: JSONValue, output: JSONValue) -> JSONValue:
    """``options`` with the seed APIs' spellings resolved (checked later, like any option)."""
    if output is not None and output not in OUTPUTS:
        raise BatchInputError(f"output: one of {list(OUTPUTS)}")
    if not isinstance(options, dict):
        return {"formats": ["json", "markdown"]} if output == "markdown" and options is None \
            else options
    options = dict(options)
    if "timeout_ms" in options:
        if "timeout_per_url" in options:
            raise BatchInputError("give only one of ['timeout_ms', 'timeout_per_url']")
        milliseconds = options.pop("timeout_ms")
        if isinstance(milliseconds, bool) or not isinstance(milliseconds, (int, float)):
            raise BatchInputError("options.timeout_ms: must be a number")
        options["timeout_per_url"] = milliseconds / MS_PER_SECOND
    if output == "markdown":
        formats = options.get("formats") or ["json"]
        options["formats"] = [*formats, "markdown"] if isinstance(formats, list) else formats
    return options


def _one_of(body: Mapping[str, JSONValue], names: tuple[str, ...]) -> JSONValue:
    given = [name for name in names if body.get(name) is not None]
    if len(given) > 1:
        raise BatchInputError(f"give only one of {given}: they are aliases")
    return body[given[0]] if given else None


def _webhook(value: JSONValue) -> Webhook | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = {"url": value}
    if not isinstance(value, dict) or set(value) - WEBHOOK_KEYS or "url" not in value:
        raise BatchInputError('webhook: must be {"url": ..., "secret": "whsec_...", "events": '
                              '[...], "metadata": {...}} or a URL')
    problems: list[dict[str, str]] = []
    url, secret = "", value.get("secret")
    try:
        url = check_url(value["url"])
    except ValueError as exc:
        problems.append({"field": "webhook.url", "code": InvalidWebhookError.code,
                         "message": str(exc)})
    if secret is not None:
        try:
            secret_key(cast(str, secret))  # (what is not a string fails there too)
        except ValueError as exc:
            problems.append({"field": "webhook.secret", "code": InvalidWebhookError.code,
                             "message": str(exc)})
    problems += webhook_option_problems(value)
    if problems:
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        raise InvalidWebhookError(summary, details=problems)
    # checked above: a key, a list of event names, an object
    given_events = cast("list[str] | None", value.get("events"))
    events = list(dict.fromkeys(given_events)) if given_events else None
    return Webhook(url=url, secret=cast("str | None", secret) or new_secret(),
                   generated=secret is None, events=events,
                   metadata=cast("JSONObject | None", value.get("metadata")))
