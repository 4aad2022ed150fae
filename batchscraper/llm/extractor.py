"""LLM extraction of one page: chunks, cache, budget, merge, one repair re-prompt.

:class:`LLMExtractor` turns a page's markdown into a record (or a list of
records) matching an answer schema. Long pages are chunked by tokens with
overlap, each chunk asked separately and the answers merged. Answers come
from the ``llm_cache`` collection when the same model, prompt, schema and
content were asked before. At most ``BATCH_LLM_CONCURRENCY`` calls are in
flight per process (independent of fetch concurrency); each is reserved
against the batch budget when it gets its slot, so the cost of earlier calls
is known by then. When the merged answer fails the caller's check (coercion and
validation), the model is asked once more with the errors.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from batchscraper.exceptions import (
    BudgetExceededError,
    LLMBadOutputError,
    LLMError,
    PageTooLongError,
)
from batchscraper.llm.client import ChatClient, ChatRequest, ChatResult
from batchscraper.llm.config import LLMConfig
from batchscraper.llm.ledger import LLMLedger
from batchscraper.llm.merge import merge_record_lists, merge_records, shape_to_schema
from batchscraper.llm.prompts import (
    LIST_KEY,
    PROMPT_VERSION,
    SYSTEM_PROMPT,
    PromptParts,
    answer_schema,
    parse_answer,
    repair_message,
    user_message,
)
from batchscraper.llm.tokens import chunk_text

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


@dataclass(frozen=True)
class PageTask:
    """One page to extract: content, what to ask for, and the batch's budget."""

    batch_id: str
    url: str
    markdown: str
    schema: dict[str, Any]
    prompt: str | None = None
    known: dict[str, Any] | None = None
    max_records: int = 1
    max_calls: int | None = None
    max_cost_usd: float | None = None


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


class LLMExtractor:
    """Runs the LLM side of extraction for the extract pipeline."""

    def __init__(
        self, config: LLMConfig, client: ChatClient, ledger: LLMLedger | None, stats: Any
    ) -> None:
        self.config = config
        self.client = client
        self.ledger = ledger
        self.stats = stats
        self._slots: asyncio.Semaphore | None = None

    async def extract(self, task: PageTask, check: Check, usage: Usage) -> Any:
        """The record (dict) or records (list) the model finds; ``usage`` is updated in place.

        ``check`` returns the schema errors of a merged answer (empty when it is
        valid); a non-empty list triggers the one repair re-prompt.
        """
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
        repaired = await self._repair(task, exchanges, value, errors, usage)
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
        exchange.text = await self._call(task, key, messages, usage)
        try:
            exchange.value = self._shape(task, parse_answer(exchange.text))
        except ValueError as exc:
            # not JSON: the repair re-prompt is spent on this chunk
            self._stat("repairs")
            usage.repaired = True
            retry_messages = _extend(
                messages, {"role": "assistant", "content": exchange.text},
                {"role": "user", "content": repair_message([str(exc)], False)})
            text = await self._call(task, _derived(key, exchange.text), retry_messages, usage)
            try:
                exchange.value = self._shape(task, parse_answer(text))
            except ValueError as again:
                self._stat("bad_output")
                raise LLMBadOutputError(
                    f"the model's answer is not a JSON object, also after a repair: {again}"
                ) from None
            exchange.text = text
            exchange.messages = retry_messages
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
        text = await self._call(task, key, messages, usage)
        try:
            return self._merge(task, [self._shape(task, parse_answer(text))])
        except ValueError:
            self._stat("bad_output")
            return None

    # -- calls -----------------------------------------------------------------------

    async def _call(
        self, task: PageTask, key: str, messages: Variants, usage: Usage
    ) -> str:
        """The answer to ``messages``: from the cache, or from one budgeted call."""
        if self.ledger is not None and self.config.cache_enabled:
            cached = await asyncio.to_thread(self.ledger.cache_get, key)
            if cached is not None:
                usage.cache_hits += 1
                self._stat("cache_hits")
                return str(cached["text"])
            self._stat("cache_misses")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.config.concurrency)
        async with self._slots:
            await self._reserve(task)
            request = ChatRequest(messages=messages[False], schema=self._answer_schema(task),
                                  prompt_messages=messages[True])
            try:
                result = await self.client.complete(request)
            except LLMError as exc:
                self._stat(f"errors/{exc.code}")
                await self._release(task)
                raise
            cost = self._account(result, usage)
            if cost and self.ledger is not None and task.max_cost_usd is not None:
                await asyncio.to_thread(self.ledger.add_cost, task.batch_id, cost)
        if self.ledger is not None and self.config.cache_enabled:
            await asyncio.to_thread(self.ledger.cache_put, key, self.config.model, result.text,
                                    result.tokens_in, result.tokens_out)
        return result.text

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

    def _account(self, result: ChatResult, usage: Usage) -> float:
        cost = self.config.cost_usd(result.tokens_in, result.tokens_out)
        usage.calls += 1
        usage.tokens_in += result.tokens_in
        usage.tokens_out += result.tokens_out
        usage.cost_usd += cost
        self._stat("calls")
        self._stat("tokens_in", result.tokens_in)
        self._stat("tokens_out", result.tokens_out)
        self._stat("cost_usd", cost)
        for event in result.events:
            self._stat(event)
        return cost

    # -- shapes ------------------------------------------------------------------------

    def _answer_schema(self, task: PageTask) -> dict[str, Any]:
        return answer_schema(task.schema, task.max_records)

    def _shape(self, task: PageTask, answer: dict[str, Any]) -> Any:
        if task.max_records <= 1:
            return shape_to_schema(answer, task.schema)
        records = answer.get(LIST_KEY)
        if not isinstance(records, list):
            records = [answer] if any(k in task.schema.get("properties", {}) for k in answer) \
                else []
        return [shape_to_schema(r, task.schema) for r in records if isinstance(r, dict)]

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

