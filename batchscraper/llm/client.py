"""The chat client: one request in, the answer's text and token usage out.

:class:`ChatClient` is the replaceable part (``BATCH_LLM_CLIENT``);
:class:`OpenAIChatClient` talks to any OpenAI-compatible server with the
``openai`` package's ``AsyncOpenAI``. One call is one attempt: it raises a
typed :class:`LLMError` (with ``retry_after`` and whether the server spent work
on it) and the extractor decides about retries, because retries share the
in-flight limit, the batch's budget and the item's deadline. The client falls
back from ``json_schema`` structured outputs to ``json_object`` and then to
plain text for servers that reject them (remembered for the rest of the process).
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from batchscraper.exceptions import LLMError, LLMRateLimitedError, LLMTimeoutError
from batchscraper.llm.config import PLACEHOLDER_API_KEY, LLMConfig
from batchscraper.llm.prompts import response_format
from batchscraper.llm.tokens import count_tokens

if TYPE_CHECKING:  # imported with the first client: 0.5 s of every crawl's start otherwise
    import openai

logger = logging.getLogger(__name__)

OPENAI_URL = "https://api.openai.com/v1"

#: response modes, best first; a server that rejects one is asked with the next
MODE_ORDER = ("json_schema", "json_object", "text")
REJECTED_FORMAT_STATUSES = frozenset({400, 404, 415, 422, 501})
#: words in an error message that say the request's response_format was the problem
FORMAT_WORDS = ("response_format", "json_schema", "json_object", "schema", "format", "grammar")


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion: messages plus the schema the answer must match.

    ``prompt_messages`` are the same conversation with the schema written into
    the prompt, sent when the server cannot take it as ``response_format``.
    """

    messages: tuple[dict[str, str], ...]
    schema: dict[str, Any] | None  # None: any JSON object (json_object mode)
    prompt_messages: tuple[dict[str, str], ...] | None = None
    max_tokens: int = 4096  # the answer's token cap
    timeout: float | None = None  # seconds for the answer (None: the configured timeout)

    def for_mode(self, mode: str) -> tuple[dict[str, str], ...]:
        """The messages to send when the answer format is asked for as ``mode``."""
        if mode != "json_schema" and self.prompt_messages is not None:
            return self.prompt_messages
        return self.messages


@dataclass(frozen=True)
class ChatResult:
    """The answer's text and what it cost; ``mode`` is how the format was asked for."""

    text: str
    tokens_in: int
    tokens_out: int
    mode: str
    finish_reason: str = "stop"  # "length": the answer was cut off at ``max_tokens``
    events: tuple[str, ...] = field(default_factory=tuple)


class ChatClient(Protocol):
    """What the extractor needs of an LLM client."""

    async def complete(self, request: ChatRequest) -> ChatResult:
        """Send ``request`` once; raise an :class:`LLMError` subclass when it is not answered."""


def load_client(config: LLMConfig) -> ChatClient:
    """The process-wide client for ``config`` (built once per process)."""
    return _cached_client(config.client_path, _ConfigKey(config))


@dataclass(frozen=True)
class _ConfigKey:
    config: LLMConfig

    def __hash__(self) -> int:
        return hash(repr(self.config))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ConfigKey) and repr(other.config) == repr(self.config)


@functools.lru_cache(maxsize=8)
def _cached_client(path: str, key: _ConfigKey) -> ChatClient:
    module_name, _, name = path.rpartition(".")
    factory: Callable[[LLMConfig], ChatClient] = getattr(importlib.import_module(module_name), name)
    return factory(key.config)


class OpenAIChatClient:
    """Chat completions through ``openai.AsyncOpenAI``."""

    def __init__(self, config: LLMConfig) -> None:
        import openai  # here: a crawl without an LLM never pays for importing it

        self.sdk = openai
        self.config = config
        self._client: openai.AsyncOpenAI | None = None
        start = "json_schema" if config.response_format == "auto" else config.response_format
        self._mode = start

    def _openai(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = self.sdk.AsyncOpenAI(
                api_key=self.config.api_key or PLACEHOLDER_API_KEY,
                base_url=self.config.base_url or None,
                timeout=self.config.timeout,
                max_retries=0,  # retried by the extractor (Retry-After, budget, deadline)
            )
        return self._client

    @property
    def endpoint(self) -> str:
        """The endpoint's host, for messages (never the key or the path)."""
        return urlsplit(self.config.base_url or OPENAI_URL).netloc or "the LLM endpoint"

    async def complete(self, request: ChatRequest) -> ChatResult:
        events: list[str] = []
        while True:
            mode = self._mode
            try:
                response = await self._send(request, mode)
            except self.sdk.APIStatusError as exc:
                if self._falls_back(exc, mode):
                    events.append(f"fallback/{self._mode}")
                    continue
                raise self._status_error(exc) from None
            except self.sdk.APITimeoutError:
                timeout = request.timeout or self.config.timeout
                raise LLMTimeoutError(
                    f"{self.endpoint} did not answer within {timeout:g} s", spent=True
                ) from None
            except self.sdk.APIConnectionError as exc:
                raise LLMError(f"cannot reach {self.endpoint}: {exc}", spent=False) from None
            return self._result(request, response, mode, events)

    def _status_error(self, exc: openai.APIStatusError) -> LLMError:
        detail = _short(exc, self.config.api_key)
        status = exc.status_code
        retry_after = _retry_after(exc.response.headers.get("retry-after"))
        if status == 429:
            return LLMRateLimitedError(f"HTTP 429 from {self.endpoint}: {detail}",
                                       retry_after=retry_after, spent=False)
        if status >= 500:
            # a 503 is a refusal (overloaded); other 5xx may come after the work was done
            return LLMError(f"HTTP {status} from {self.endpoint}: {detail}",
                            retry_after=retry_after, saturated=status == 503,
                            spent=status != 503)
        return LLMError(f"{self.endpoint} answered HTTP {status}: {detail}", retryable=False,
                        spent=False)

    async def _send(self, request: ChatRequest, mode: str) -> object:
        messages = list(request.for_mode(mode))
        kwargs: dict[str, Any] = {}
        fmt = response_format(mode, request.schema)
        if fmt is not None:
            kwargs["response_format"] = fmt
        return await self._openai().chat.completions.create(
            model=self.config.model,
            messages=messages,  # type: ignore[arg-type]
            temperature=self.config.temperature,
            max_tokens=request.max_tokens,
            timeout=request.timeout or self.config.timeout,
            **kwargs,
        )

    def _falls_back(self, exc: openai.APIStatusError, mode: str) -> bool:
        """A server that rejects this ``response_format`` is asked with the next mode."""
        if (self.config.response_format != "auto" or exc.status_code not in
                REJECTED_FORMAT_STATUSES or mode == MODE_ORDER[-1]):
            return False
        if not any(word in str(exc.message).lower() for word in FORMAT_WORDS):
            return False
        if mode == self._mode:
            self._mode = MODE_ORDER[MODE_ORDER.index(mode) + 1]
            logger.warning(
                "LLM endpoint rejected response_format %s (HTTP %s); using %s from now on",
                mode, exc.status_code, self._mode,
            )
        return True

    def _result(
        self, request: ChatRequest, response: object, mode: str, events: list[str]
    ) -> ChatResult:
        choices = getattr(response, "choices", None) or []
        message = choices[0].message if choices else None
        finish_reason = (getattr(choices[0], "finish_reason", None) if choices else None) or "stop"
        text = (getattr(message, "content", None) or "") if message is not None else ""
        usage = getattr(response, "usage", None)
        tokens_in = getattr(usage, "prompt_tokens", None)
        tokens_out = getattr(usage, "completion_tokens", None)
        if tokens_in is None:
            tokens_in = sum(count_tokens(m["content"], self.config.encoding)
                            for m in request.for_mode(mode))
        if tokens_out is None:
            tokens_out = count_tokens(text, self.config.encoding)
        return ChatResult(text=text, tokens_in=int(tokens_in), tokens_out=int(tokens_out),
                          mode=mode, finish_reason=str(finish_reason), events=tuple(events))


def _short(exc: openai.APIStatusError, api_key: str) -> str:
    """The endpoint's error message, shortened, without the API key (some servers echo it)."""
    text = str(exc.message)
    if api_key:
        text = text.replace(api_key, "[redacted]")
    return text[:300]


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta or HTTP date), or None."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max((when - dt.datetime.now(dt.UTC)).total_seconds(), 0.0)
