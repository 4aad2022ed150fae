"""What the extract pipeline does with an LLM's answer: grounding its values in the page,
completing objects the page filled in part, and the usage and list notes of ``extraction``
(see :mod:`pipelines.extract`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sized
from typing import Any, NotRequired, TypedDict

from batchscraper.extraction.coerce import coerce_to_schema
from batchscraper.extraction.content import PageContent
from batchscraper.extraction.validation import RecordChecker
from batchscraper.items import PageItem
from batchscraper.jsontypes import JSONObject, JSONValue
from batchscraper.llm.extractor import Usage
from batchscraper.llm.grounding import PageIndex, grounded, strip_invented, strip_ungrounded
from batchscraper.llm.merge import is_empty, merge_values
from batchscraper.llm.prompts import leaks_instructions
from pipelines.structured import StructuredResult, wants_links


class GroundingMeta(TypedDict):
    """What grounding noted of an answer's fields: found on the page or not, and those
    ungrounded, nulled (as the ``grounding`` mode says) or leaking the instructions."""

    grounded: dict[str, bool]
    ungrounded: NotRequired[list[str]]
    nulled: NotRequired[list[str]]
    leaked: NotRequired[list[str]]


def ground_answer(values: dict[str, Any], index: PageIndex, schema: dict[str, Any],
                  mode: str, stat: Callable[[str, int], None]) -> GroundingMeta:
    """Check LLM values against the page, in place; null them as the mode says."""
    properties = schema.get("properties") or {}
    grounding = {}
    leaked = []
    nulled = []
    for name, value in list(values.items()):
        if leaks_instructions(value):
            leaked.append(name)
            values[name] = None
            continue
        if is_empty(value):
            continue
        grounding[name] = grounded(value, index, name)
        if grounding[name]:
            continue
        if mode == "strict":
            values[name] = strip_ungrounded(value, index, name)
        elif mode == "auto":
            values[name] = strip_invented(name, value, properties.get(name, {}), index)
        if values[name] != value:
            nulled.append(name)
    ungrounded = sorted(name for name, ok in grounding.items() if not ok)
    meta: GroundingMeta = {"grounded": grounding}
    if ungrounded:
        meta["ungrounded"] = ungrounded
        stat("llm/ungrounded", len(ungrounded))
    if nulled:
        meta["nulled"] = sorted(nulled)
        stat("llm/nulled", len(nulled))
    if leaked:
        meta["leaked"] = sorted(leaked)
        stat("llm/leaks", len(leaked))
    return meta


def add_usage(item: PageItem, usage: Usage) -> None:
    """Add this pass's LLM usage to the item (an earlier pass's usage may be on it)."""
    tokens = item.tokens or {}
    item.llm_calls += usage.calls
    item.llm_ms = (item.llm_ms or 0) + int(usage.seconds * 1000)
    item.tokens = {"in": tokens.get("in", 0) + usage.tokens_in,
                   "out": tokens.get("out", 0) + usage.tokens_out}
    item.cost_usd = round(item.cost_usd + usage.cost_usd, 8)

def usage_meta(usage: Usage) -> dict[str, object]:
    """The LLM usage noted in ``extraction``: chunks, cache hits, repairs, trimmed values."""
    meta: dict[str, object] = {"chunks": usage.chunks, "cache_hits": usage.cache_hits}
    if usage.repaired:
        meta["repaired"] = True
    if usage.repair_skipped:
        meta["repair_skipped"] = usage.repair_skipped
    if usage.trimmed:
        meta["trimmed"] = sorted(set(usage.trimmed))
    return meta


def completed_objects(checker: RecordChecker, partial: Mapping[str, JSONValue],
                      answered: Mapping[str, JSONValue]) -> JSONObject:
    """Objects the page filled in part, completed by the LLM's answer: the page's values win
    (they were read, not guessed) unless they make the object invalid where the answer is
    not."""
    completed: JSONObject = {}
    for name, known in partial.items():
        answer = answered.get(name)
        merged = merge_values(known, answer if isinstance(answer, dict) else None)
        if merged == answer:
            continue
        if isinstance(answer, dict) and name in checker.invalid_fields(
                coerce_to_schema({name: merged}, checker.schema)) and name not in \
                checker.invalid_fields(coerce_to_schema({name: answer}, checker.schema)):
            continue
        completed[name] = merged
    return completed


def page_index(page: PageContent, schema: Mapping[str, object]) -> PageIndex:
    """What LLM values are grounded in: the page's text, and its links when asked for."""
    return PageIndex.of(f"{page.text}\n{page.markdown}" if wants_links(schema) else page.text)


def list_meta(records: Sized, found: StructuredResult, limit: int) -> dict[str, object]:
    """``records_on_page`` and whether the page visibly holds more than was extracted."""
    meta: dict[str, object] = {"records_on_page": found.visible}
    if found.visible > len(records):
        meta["more_on_page"] = True
        meta["capped"] = len(records) >= limit
    return meta
