"""LLM extraction of one page: chunks, cache, budget, merge, one repair re-prompt.

:class:`LLMExtractor` turns a page's markdown into a record (or a list of
records) matching an answer schema. Long pages are chunked by tokens with
overlap, each chunk asked separately and the answers merged. Answers come
from the ``llm_cache`` collection when the same model, prompt, schema and
content were asked before; only answers that parsed are cached. The calls in
flight per process are limited by an adaptive :class:`LLMThrottle` (independent
of fetch concurrency); each attempt is reserved against the batch budget when
it gets its slot, so the cost of earlier calls is known by then.

Retries live here, not in the client: a timeout, 429 or 5xx is retried with
backoff (``Retry-After`` honoured) until ``BATCH_LLM_RETRIES`` or the item's
deadline (``BATCH_LLM_ITEM_DEADLINE``) runs out, each retry logged. An attempt
the server may have worked on (a timeout, a 5xx) counts as a call. An answer
cut off at its token cap is asked again once with four times the cap (at most
``BATCH_LLM_MAX_OUTPUT_TOKENS``), then fails with LLM_OUTPUT_TRUNCATED. When the
merged answer fails the caller's check (coercion and validation), the model is
asked once more with the errors; if the budget refuses that repair, the first
answer is kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from batchscraper.exceptions import (
    BudgetExceededError,
    LLMBadOutputError,
    LLMError,
    LLMOutputTruncatedError,
    LLMTimeoutError,
    PageTooLongError,
)
from batchscraper.llm.client import ChatClient, ChatRequest, ChatResult
from batchscraper.llm.config import LLMConfig
from batchscraper.llm.merge import merge_record_lists, merge_records, shape_to_schema
from batchscraper.llm.prompts import (
    LIST_KEY,
    PROMPT_VERSION,
    SYSTEM_PROMPT,
    PromptParts,
    answer_schema,
    output_budget,
    parse_answer,
    repair_message,
    user_message,
)
from batchscraper.llm.throttle import LLMThrottle
from batchscraper.llm.tokens import chunk_text
from batchscraper.store.ledger import LLMLedger

logger = logging.getLogger(__name__)

#: the stand-in for the page in a repair request of a chunked page
CHUNKED_PAGE_NOTE = (
    "A long page was sent in {n} parts; the record merged from the answers follows."
    "\n\nAnswer schema (JSON Schema); reply with JSON only:\n{schema}"
)


@dataclass
class Usage:
    """What one item's LLM work cost; filled in as calls are made, also when one fails."""

    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    cache_hits: int = 0
    chunks: int = 0
    repaired: bool = False
    repair_skipped: str | None = None  # why the repair re-prompt was not sent
    trimmed: list[str] = field(default_factory=list)  # values cut to maxLength/maxItems
    seconds: float = 0.0  # wall time of the LLM work (waits for slots and retries included)
    deadline: float | None = None  # time.monotonic() after which no attempt starts


@dataclass(frozen=True)
class PageTask:
    """One page to extract: content, what to ask for, and the batch's budget."""

    batch_id: str
    url: str
    markdown: str
    schema: dict[str, Any] | None  # None: a free-form JSON object (a prompt-only batch)
    prompt: str | None = None
    known: dict[str, Any] | None = None
    max_records: int = 1
    max_calls: int | None = None
    max_cost_usd: float | None = None
    cache: bool = True  # False: no answer of this batch is read from or kept in llm_cache


Messages = tuple[dict[str, str], ...]
#: a conversation in both forms: schema in the request (False) or in the prompt (True)
Variants = dict[bool, Messages]


def _extend(variants: Variants, *messages: dict[str, str]) -> Variants:
    return {in_prompt: (*sent, *messages) for in_prompt, sent in variants.items()}


@dataclass
class _Exchange:
    """One chunk's request and answer, kept for the repair re-prompt."""

    key: str
    messages: Variants
    text: str = ""
    value: Any = None
    errors: list[str] = field(default_factory=list)


Check = Callable[[Any], list[str]]
#: an answer cut off at its cap is asked once more with this many times the cap
TRUNCATED_GROWTH = 4


@dataclass(frozen=True)
class _Answer:
    """An answer's text; ``fresh`` is the call's result when it did not come from the cache."""

    text: str
    fresh: ChatResult | None = None


class LLMExtractor:
    """Runs the LLM side of extraction for the extract pipeline."""

    def __init__(
        self, config: LLMConfig, client: ChatClient, ledger: LLMLedger | None, stats: Any
    ) -> None:
        self.config = config
        self.client = client
        self.ledger = ledger
        self.stats = stats
        self._throttle: LLMThrottle | None = None  # made on the reactor's event loop

    async def extract(self, task: PageTask, check: Check, usage: Usage) -> Any:
        """The record (dict) or records (list) the model finds; ``usage`` is updated in place.

        ``check`` returns the schema errors of a merged answer (empty when it is
        valid); a non-empty list triggers the one repair re-prompt.
        """
        started = time.monotonic()
        try:
            return await self._extract(task, check, usage)
        finally:
            usage.seconds += time.monotonic() - started

    async def _extract(self, task: PageTask, check: Check, usage: Usage) -> Any:
        chunks = chunk_text(task.markdown, self.config.chunk_tokens, self.config.chunk_overlap,
                            self.config.encoding)
        if len(chunks) > self.config.max_chunks:
            raise PageTooLongError(
                f"the page is {len(chunks)} chunks of {self.config.chunk_tokens} tokens; "
                f"BATCH_LLM_MAX_CHUNKS is {self.config.max_chunks}"
            )
        usage.chunks = len(chunks)
        if len(chunks) > 1:
            self._stat("chunked_pages")
            self._stat("chunks", len(chunks))
        exchanges = await self._gather(
            [self._ask_chunk(task, chunk, (n, len(chunks)), usage)
             for n, chunk in enumerate(chunks, 1)]
        )
        value = self._merge(task, [exchange.value for exchange in exchanges])
        errors = check(value)
        if not errors:
            return value
        self._stat("repairs")
        usage.repaired = True
        try:
            repaired = await self._repair(task, exchanges, value, errors, usage)
        except BudgetExceededError:
            usage.repair_skipped = "budget"  # the first, paid answer is kept
            return value
        return repaired if repaired is not None else value

    # -- one chunk -----------------------------------------------------------------

    async def _ask_chunk(
        self, task: PageTask, chunk: str, part: tuple[int, int], usage: Usage
    ) -> _Exchange:
        parts = PromptParts(schema=self._answer_schema(task), prompt=task.prompt, page=chunk,
                            url=task.url, known=task.known, max_records=task.max_records,
                            part=part)
        messages: Variants = {
            in_prompt: ({"role": "system", "content": SYSTEM_PROMPT},
                        {"role": "user", "content": user_message(parts, in_prompt)})
            for in_prompt in (False, True)
        }
        key = cache_key(self.config.model, task, chunk, part)
        exchange = _Exchange(key=key, messages=messages)
        answer = await self._call(task, key, messages, usage)
        exchange.text = answer.text
        try:
            exchange.value = self._shape(task, parse_answer(answer.text), usage)
        except ValueError as exc:
            # not JSON: the repair re-prompt is spent on this chunk
            self._stat("repairs")
            usage.repaired = True
            retry_messages = _extend(
                messages, {"role": "assistant", "content": answer.text},
                {"role": "user", "content": repair_message([str(exc)], False)})
            retry_key = _derived(key, answer.text)
            answer = await self._call(task, retry_key, retry_messages, usage)
            try:
                exchange.value = self._shape(task, parse_answer(answer.text), usage)
            except ValueError as again:
                self._stat("bad_output")
                raise LLMBadOutputError(
                    f"the model's answer is not a JSON object, also after a repair: {again}"
                ) from None
            exchange.text = answer.text
            exchange.messages = retry_messages
            # the usable answer also answers the first request: a re-run makes no call
            await self._remember(task, retry_key, answer)
        await self._remember(task, key, answer)
        return exchange

    async def _repair(
        self, task: PageTask, exchanges: list[_Exchange], value: Any, errors: list[str],
        usage: Usage,
    ) -> Any:
        if len(exchanges) == 1:
            base = exchanges[0].messages
            previous = exchanges[0].text
        else:
            schema = json.dumps(self._answer_schema(task), ensure_ascii=False, sort_keys=True)
            note = CHUNKED_PAGE_NOTE.format(n=len(exchanges), schema=schema)
            single = ({"role": "system", "content": SYSTEM_PROMPT},
                      {"role": "user", "content": note})
            base = {False: single, True: single}
            previous = json.dumps(self._unshape(task, value), ensure_ascii=False)
        messages = _extend(base, {"role": "assistant", "content": previous},
                           {"role": "user", "content": repair_message(errors, True)})
        key = _derived("|".join(e.key for e in exchanges), previous + json.dumps(errors))
        answer = await self._call(task, key, messages, usage)
        try:
            repaired = self._merge(task, [self._shape(task, parse_answer(answer.text), usage)])
        except ValueError:
            self._stat("bad_output")
            return None
        await self._remember(task, key, answer)
        return repaired

    # -- calls -----------------------------------------------------------------------

    async def _call(
        self, task: PageTask, key: str, messages: Variants, usage: Usage
    ) -> _Answer:
        """The answer to ``messages``: from the cache, or from budgeted attempts."""
        if self.ledger is not None and self.config.cache_enabled and task.cache:
            cached = await asyncio.to_thread(self.ledger.cache_get, key, task.batch_id)
            if cached is not None:
                usage.cache_hits += 1
                self._stat("cache_hits")
                return _Answer(str(cached["text"]))
            self._stat("cache_misses")
        schema = self._answer_schema(task)
        request = ChatRequest(
            messages=messages[False], schema=schema, prompt_messages=messages[True],
            max_tokens=output_budget(schema, self.config.max_output_tokens),
        )
        retries = timeouts = 0
        enlarged = False
        while True:
            try:
                result = await self._attempt(task, request, timeouts, usage)
            except LLMError as exc:
                self._stat(f"errors/{exc.code}")
                timeouts += isinstance(exc, LLMTimeoutError)
                delay = self._retry_delay(usage, exc, retries)
                if delay is None:
                    raise
                retries += 1
                self._stat("retries")
                logger.warning("LLM request for %s failed (%s: %s); retry %d of %d in %.1f s",
                               task.url, exc.code, exc.message, retries, self.config.retries,
                               delay)
                await asyncio.sleep(delay)
                continue
            if result.finish_reason != "length":
                return _Answer(result.text, result)
            self._stat("truncated")
            if request.max_tokens >= self.config.max_output_tokens or enlarged:
                raise LLMOutputTruncatedError(
                    f"the answer was cut off at {request.max_tokens} tokens, also with a "
                    f"larger cap (BATCH_LLM_MAX_OUTPUT_TOKENS is {self.config.max_output_tokens})"
                )
            enlarged = True
            request = replace(request, max_tokens=min(TRUNCATED_GROWTH * request.max_tokens,
                                                      self.config.max_output_tokens))

    async def _attempt(
        self, task: PageTask, request: ChatRequest, timeouts: int, usage: Usage
    ) -> ChatResult:
        """One request: wait for a slot, reserve it in the budget, send, account."""
        if self._throttle is None:
            self._throttle = LLMThrottle(self.config.concurrency, self.config.max_concurrency,
                                         self._gauge)
        async with self._throttle.slot() as slot:
            now = time.monotonic()
            if usage.deadline is None:  # the item's clock starts with its first slot
                usage.deadline = now + self.config.item_deadline
            # an answer may wait behind ``slot.ahead`` others at the server; a retry
            # after a timeout gets twice as long (the answer may just be slow)
            timeout = self.config.timeout * (slot.ahead + 1) * 2 ** timeouts
            left = usage.deadline - now
            if left < min(timeout, self.config.timeout):
                raise LLMTimeoutError(
                    f"no answer within the item's LLM deadline "
                    f"(BATCH_LLM_ITEM_DEADLINE {self.config.item_deadline:g} s)", spent=False)
            cut_by_deadline = left < timeout
            timeout = min(timeout, left)
            await self._reserve(task)
            spent = False  # the server (may have) worked on it: the reserved call stands
            try:
                result = await self.client.complete(replace(request, timeout=timeout))
                spent = True
            except LLMError as exc:
                if exc.saturated and not cut_by_deadline:
                    self._throttle.congested(slot)
                spent = exc.spent
                if spent:
                    self._count_call(usage)
                raise
            finally:
                if not spent:  # refused, unreachable, or the wait was cancelled
                    await self._release(task)
            self._throttle.answered(slot)
            cost = self._account(result, usage)
            if cost and self.ledger is not None and task.max_cost_usd is not None:
                await asyncio.to_thread(self.ledger.add_cost, task.batch_id, cost)
        return result

    def _retry_delay(self, usage: Usage, exc: LLMError, retries: int) -> float | None:
        """Seconds to wait before retrying after ``exc``; None when it is not retried."""
        if not exc.retryable or retries >= self.config.retries:
            return None
        if exc.retry_after is not None:
            delay = min(exc.retry_after, self.config.backoff_max)
        else:
            delay = min(self.config.backoff_base * 2 ** retries, self.config.backoff_max)
        if usage.deadline is not None and time.monotonic() + delay >= usage.deadline:
            return None
        return delay

    async def _remember(self, task: PageTask, key: str, answer: _Answer) -> None:
        """Cache a fresh answer that proved usable."""
        result = answer.fresh
        if result is None or self.ledger is None or not self.config.cache_enabled \
                or not task.cache:
            return
        await asyncio.to_thread(self.ledger.cache_put, key, self.config.model, result.text,
                                result.tokens_in, result.tokens_out, task.batch_id)

    async def _reserve(self, task: PageTask) -> None:
        if self.ledger is None or (task.max_calls is None and task.max_cost_usd is None):
            return
        allowed = await asyncio.to_thread(
            self.ledger.reserve_call, task.batch_id, task.max_calls, task.max_cost_usd
        )
        if not allowed:
            self._stat("budget_exceeded")
            raise BudgetExceededError(
                f"the batch's LLM budget is spent (max_llm_calls={task.max_calls}, "
                f"max_cost_usd={task.max_cost_usd})"
            )

    async def _release(self, task: PageTask) -> None:
        budgeted = task.max_calls is not None or task.max_cost_usd is not None
        if self.ledger is not None and budgeted:
            await asyncio.to_thread(self.ledger.release_call, task.batch_id)

    def _count_call(self, usage: Usage) -> None:
        usage.calls += 1
        self._stat("calls")

    def _account(self, result: ChatResult, usage: Usage) -> float:
        cost = self.config.cost_usd(result.tokens_in, result.tokens_out)
        self._count_call(usage)
        usage.tokens_in += result.tokens_in
        usage.tokens_out += result.tokens_out
        usage.cost_usd += cost
        self._stat("tokens_in", result.tokens_in)
        self._stat("tokens_out", result.tokens_out)
        self._stat("cost_usd", cost)
        for event in result.events:
            self._stat(event)
        return cost

    # -- shapes ------------------------------------------------------------------------

    def _answer_schema(self, task: PageTask) -> dict[str, Any] | None:
        return answer_schema(task.schema, task.max_records) if task.schema is not None else None

    def _shape(self, task: PageTask, answer: dict[str, Any], usage: Usage) -> Any:
        if task.schema is None:
            return answer  # free-form: any JSON object (its size is bounded at validation)
        if task.max_records <= 1:
            return shape_to_schema(answer, task.schema, usage.trimmed)
        records = answer.get(LIST_KEY)
        if not isinstance(records, list):
            records = [answer] if any(k in task.schema.get("properties", {}) for k in answer) \
                else []
        return [shape_to_schema(r, task.schema, usage.trimmed)
                for r in records[:task.max_records] if isinstance(r, dict)]

    def _unshape(self, task: PageTask, value: Any) -> Any:
        return {LIST_KEY: value} if task.max_records > 1 else value

    def _merge(self, task: PageTask, values: list[Any]) -> Any:
        if task.max_records <= 1:
            return merge_records([v for v in values if isinstance(v, dict)])
        return merge_record_lists([v for v in values if isinstance(v, list)], task.max_records)

    async def _gather(self, calls: list[Any]) -> list[_Exchange]:
        """Every chunk's exchange; the first failure is raised once all have finished."""
        results = await asyncio.gather(*calls, return_exceptions=True)
        exchanges = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            exchanges.append(result)
        return exchanges

    def _gauge(self, in_flight: int, waiting: int) -> None:
        """LLM requests in flight and waiting for a slot, for the progress line."""
        if self.stats is not None:
            self.stats.set_value("batch/llm/in_flight", in_flight)
            self.stats.set_value("batch/llm/waiting", waiting)

    def _stat(self, key: str, value: float = 1) -> None:
        if self.stats is not None:
            self.stats.inc_value(f"batch/llm/{key}", value)


def cache_key(model: str, task: PageTask, content: str, part: tuple[int, int]) -> str:
    """hash(model, prompt, schema, content): the ``llm_cache`` key of one request."""
    payload = json.dumps(
        [PROMPT_VERSION, model, task.prompt, task.schema, task.known, task.max_records,
         part, content],
        sort_keys=True, ensure_ascii=False, default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _derived(key: str, extra: str) -> str:
    return hashlib.sha256(f"{key}\n{extra}".encode("utf-8", "replace")).hexdigest()

