"""The item that travels from the spider through the pipelines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from batchscraper.jsontypes import Document

if TYPE_CHECKING:
    from batchscraper.exceptions import ErrorInfo
    from batchscraper.store.documents import ScreenshotRef


@dataclass
class PageItem:
    """One URL's result: the stored item record, plus the page while it is processed.

    ``body`` (the decoded page) and ``screenshot_png`` are dropped by the store
    pipeline; everything else is the record written to MongoDB and exported
    to feeds.
    """

    batch_id: str
    index: int
    url: str
    status: str = "completed"
    render_mode: str = "fetch"
    render_reason: str | None = None
    http_status: int | None = None
    final_url: str | None = None
    attempts: int = 1
    duration_ms: int | None = None
    data: object = None  # the extracted record (a JSON object), or a list page's records
    validation: Document | None = None
    evidence: dict[str, str] | None = None
    error: ErrorInfo | None = None
    content: dict[str, str] | None = None
    filtered_out: int = 0
    llm_calls: int = 0
    llm_ms: int = 0  # time spent waiting for LLM answers (part of duration_ms)
    tokens: dict[str, int] | None = None
    cost_usd: float = 0.0
    extraction: Document | None = None  # how the record was made (method, chunks, grounding)
    screenshot: ScreenshotRef | None = None
    pdf: Document | None = None  # a PDF page's pages and document information
    cache: str | None = None  # with max_age: hit, revalidated or miss
    body: str | None = field(default=None, repr=False)
    screenshot_png: bytes | None = field(default=None, repr=False)

    def fail(self, error: ErrorInfo) -> None:
        """Mark the item failed with an ``error`` object (code, message, retryable)."""
        self.status = "failed"
        self.error = error
