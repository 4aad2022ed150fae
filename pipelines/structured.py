"""The page's structured data, the extract pipeline's first step: JSON-LD, microdata and
OpenGraph mapped onto the batch schema, page heuristics for what a single record still lacks,
and the fields left for an LLM (see :mod:`pipelines.extract`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batchscraper.exceptions import ValidationFailedError
from batchscraper.extraction.content import pruned_tree
from batchscraper.extraction.heuristics import fill_missing, missing_fields
from batchscraper.extraction.listing import structured_records, visible_record_count
from batchscraper.extraction.shaping import tokens
from batchscraper.extraction.structured import (
    StructuredData,
    jsonld_from_text,
    map_to_schema,
    parse_structured_data,
)
from batchscraper.extraction.validation import RecordChecker

#: evidence of a record the page marked up as an entity
MARKUP_SOURCES = frozenset({"jsonld", "microdata"})
URL_WORDS = frozenset({"url", "link", "href", "image", "images", "logo", "thumbnail"})


@dataclass(frozen=True)
class StructuredResult:
    """What the page's structured data gives (CPU work done off the reactor thread)."""

    data: Any  # a record, or a list of records on list pages
    evidence: dict[str, str]
    visible: int = 0
    ask: frozenset[str] = frozenset()  # a single record's fields still to ask an LLM for
    failed: ValidationFailedError | None = None  # checking the record did (what was found stays)



def marked_up(evidence: dict[str, str]) -> bool:
    """Whether a record comes from the page's markup (JSON-LD, microdata): trusted as it is;
    one guessed from the page's text is completed by the LLM when one is configured."""
    return any(set(source.split("+")) & MARKUP_SOURCES for source in evidence.values())


def structured_step(html: str, url: str, checker: RecordChecker, many: bool,
                    heuristics: bool = True) -> StructuredResult:
    """Structured data of one page: a record and the fields it still lacks, or records plus
    the page's visible card count (one trip off the reactor thread for all of it).

    Page heuristics fill what a single record still lacks, unless ``heuristics`` is off.
    """
    schema = checker.schema
    jsonld = jsonld_from_text(html)
    if not many:
        data, evidence = map_to_schema(StructuredData(jsonld=jsonld), schema)
        if not jsonld or any(missing_fields(schema, data)):  # else the page's tree adds nothing
            data, evidence = map_to_schema(parse_structured_data(html, url, jsonld), schema)
        if heuristics:
            data, evidence = fill_missing(html, url, schema, data, evidence)
        try:
            ask = checker.fields_to_ask(data, not marked_up(evidence))
        except ValidationFailedError as exc:  # VALIDATION_TIMEOUT: the item fails, data kept
            return StructuredResult(data, evidence, failed=exc)
        return StructuredResult(data, evidence, ask=frozenset(ask))
    records, evidence = structured_records(parse_structured_data(html, url, jsonld), schema)
    return StructuredResult(records, evidence, visible_record_count(pruned_tree(html, url)))


def wants_links(schema: Mapping[str, object]) -> bool:
    """Whether the schema asks for URLs (then the markdown keeps its links)."""
    stack: list[object] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("format") in ("uri", "url", "iri", "uri-reference"):
                return True
            for name, sub in (node.get("properties") or {}).items():
                if URL_WORDS & set(tokens(name)):
                    return True
                stack.append(sub)
            stack.extend(v for k, v in node.items() if k in ("items", "anyOf", "oneOf"))
    return False
