"""Re-extract a batch from stored content, without fetching again.

A batch whose ``formats`` kept the page (``html``, or ``markdown``/``text``)
can be extracted again with a new schema or prompt: :func:`reextract_spec`
builds the new batch from the old one's URLs, and :func:`stored_page_item`
turns each stored item into the :class:`PageItem` the pipelines expect. With
``html`` kept, structured data is parsed again; with only markdown or text,
extraction is LLM-only on that text.
"""

from __future__ import annotations

from dataclasses import replace

from batchscraper.exceptions import BatchStateError, NoStoredContentError
from batchscraper.inputs import BatchOptions, BatchSpec, Limits, parse_batch
from batchscraper.items import PageItem
from batchscraper.jsontypes import Document
from batchscraper.store import BatchStore
from batchscraper.store.base import record_index

CONTENT_FORMATS = ("html", "markdown", "text")
DEFAULT_LIMITS = Limits()


def reextract_spec(
    store: BatchStore,
    source_batch_id: str,
    schema: object,
    prompt: object = None,
    options: object = None,
    limits: Limits = DEFAULT_LIMITS,
    llm_configured: bool = True,
    **option_args: object,
) -> BatchSpec:
    """A new batch over the source batch's URLs (same order) with a new schema/prompt.

    Inputs are parsed exactly like :func:`parse_batch`'s; unless the options
    say otherwise, the new batch keeps the same content formats as the
    source, so it can be re-extracted again. Text without its HTML (no
    structured data left) needs an LLM: without one it is refused here
    rather than failing every item.
    """
    source = store.get_batch(source_batch_id)
    kept = set(source["options"].get("formats") or ()) & set(CONTENT_FORMATS)
    if not kept:
        raise BatchStateError(
            f"batch {source_batch_id} kept no page content (formats html, markdown or text)"
        )
    if "html" not in kept and not llm_configured:
        raise BatchStateError(
            f"batch {source_batch_id} kept only {', '.join(sorted(kept))}, which only an LLM"
            " extracts from, and no LLM is configured (OPENAI_BASE_URL or OPENAI_API_KEY,"
            " BATCH_LLM_ENABLED)"
        )
    urls = [doc["url"] for doc in store.iter_items(source_batch_id)]
    spec = parse_batch(urls, schema, prompt, options, limits, **option_args)
    if spec.options.formats == BatchOptions().formats:
        spec = replace(spec, options=replace(spec.options, formats=tuple(sorted(kept))))
    return spec


def stored_page_item(
    store: BatchStore, source_batch_id: str, doc: Document, batch_id: str
) -> PageItem:
    """The item to extract for ``doc`` (an item of the new batch) from the source's content.

    A source item without content (it failed to fetch) gives a failed item
    with its original error, so the new batch records why.
    """
    index = record_index(doc)
    attempts = doc.get("attempts", 1)
    source = store.item(source_batch_id, index,
                        ("content", "final_url", "http_status", "render_mode", "error")) or {}
    item = PageItem(
        batch_id=batch_id, index=index, url=str(doc["url"]),
        attempts=attempts if isinstance(attempts, int) else 1, final_url=source.get("final_url"),
        http_status=source.get("http_status"), render_mode=source.get("render_mode", "fetch"),
    )
    content = source.get("content") or {}
    if content.get("html"):
        item.body = content["html"]
    elif content.get("markdown") or content.get("text"):
        kept = "markdown" if content.get("markdown") else "text"
        item.content = {kept: content[kept]}
    else:
        error = source.get("error") or NoStoredContentError(
            "the source batch kept no content for this URL"
        ).to_dict()
        item.fail(error)
    return item
