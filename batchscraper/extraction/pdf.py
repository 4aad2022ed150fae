"""PDF pages: their text and document metadata, as a small HTML page for the usual extraction.

A fetched ``application/pdf`` (or a body that starts with ``%PDF-``) is read with
pypdf: at most ``BATCH_PDF_MAX_PAGES`` pages, a body of at most
``BATCH_PDF_MAX_BYTES``, within ``BATCH_PDF_TIMEOUT`` seconds. Its title, author
and dates become ``<title>`` and ``<meta>`` tags and its text one ``<section>``
per page, so structured data, heuristics, templates and the LLM read it like any
page, and ``formats`` keep its text. An encrypted or broken PDF is
``PDF_UNREADABLE``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scrapy.settings import BaseSettings

from batchscraper.exceptions import ContentTooLargeError, PdfUnreadableError
from batchscraper.jsontypes import Document

if TYPE_CHECKING:
    from pypdf import DocumentInformation

logger = logging.getLogger(__name__)

PDF_TYPES = ("application/pdf", "application/x-pdf")
PDF_MAGIC = b"%PDF-"
MAGIC_WINDOW = 1024  # the PDF header may follow some junk


@dataclass(frozen=True)
class PdfLimits:
    max_pages: int = 200
    max_bytes: int = 10 * 1024 * 1024
    timeout: float = 20.0

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> PdfLimits:
        return cls(
            max_pages=settings.getint("BATCH_PDF_MAX_PAGES"),
            max_bytes=settings.getint("BATCH_PDF_MAX_BYTES"),
            timeout=settings.getfloat("BATCH_PDF_TIMEOUT"),
        )


@dataclass(frozen=True)
class PdfDocument:
    """What was read from a PDF: its pages' text and its document information."""

    pages_text: list[str]
    pages: int
    title: str | None = None
    author: str | None = None
    subject: str | None = None
    created: str | None = None
    modified: str | None = None

    def record(self) -> Document:
        """The item record's ``pdf`` entry."""
        return {"pages": self.pages, "pages_read": len(self.pages_text), "title": self.title,
                "author": self.author, "created": self.created, "modified": self.modified}

    def to_html(self) -> str:
        """The document as a page: metadata in the head, a section of paragraphs per page."""
        head = [f"<title>{html.escape(self.title)}</title>"] if self.title else []
        for name, value in (("author", self.author), ("description", self.subject),
                            ("date", self.created), ("article:published_time", self.created),
                            ("article:modified_time", self.modified)):
            if value:
                attribute = "property" if ":" in name else "name"
                head.append(f'<meta {attribute}="{name}" content="{html.escape(value)}">')
        body = [f"<h1>{html.escape(self.title)}</h1>"] if self.title else []
        for number, text in enumerate(self.pages_text, 1):
            paragraphs = "".join(f"<p>{html.escape(line)}</p>"
                                 for line in text.splitlines() if line.strip())
            body.append(f'<section data-page="{number}">{paragraphs}</section>')
        return (f"<!DOCTYPE html><html><head>{''.join(head)}</head>"
                f"<body><main>{''.join(body)}</main></body></html>")


def is_pdf(content_type: str, body: bytes) -> bool:
    """A declared PDF, or a body that is one whatever it was labelled."""
    return content_type.split(";")[0].strip().lower() in PDF_TYPES or (
        PDF_MAGIC in body[:MAGIC_WINDOW]
    )


def read_pdf(body: bytes, max_pages: int) -> PdfDocument:
    """The text of the first ``max_pages`` pages and the document information (blocking)."""
    from pypdf import PdfReader  # here: most crawls never meet a PDF (~60 ms of import)
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(body))
        if reader.is_encrypted and not reader.decrypt(""):
            raise PdfUnreadableError("the PDF is encrypted with a password")
        texts = [page.extract_text() or "" for page in reader.pages[:max_pages]]
        info = reader.metadata
        return PdfDocument(
            pages_text=texts,
            pages=len(reader.pages),
            title=_text(info.title) if info else None,
            author=_text(info.author) if info else None,
            subject=_text(info.subject) if info else None,
            created=_date(info, "creation_date"),
            modified=_date(info, "modification_date"),
        )
    except PdfUnreadableError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError,
            AssertionError, RecursionError, NotImplementedError) as exc:
        # pypdf lets a broken file surface as many exception types
        message = f"the PDF cannot be read: {type(exc).__name__}: {exc}"
        raise PdfUnreadableError(message[:300]) from None


async def pdf_document(body: bytes, limits: PdfLimits) -> PdfDocument:
    """Read ``body`` off the reactor thread, within the size and time limits."""
    if len(body) > limits.max_bytes:
        raise ContentTooLargeError(
            f"PDF is {len(body)} bytes; the limit is {limits.max_bytes} (BATCH_PDF_MAX_BYTES)"
        )
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(read_pdf, body, limits.max_pages), limits.timeout
        )
    except TimeoutError:
        raise PdfUnreadableError(
            f"reading the PDF took longer than {limits.timeout:g} s (BATCH_PDF_TIMEOUT)"
        ) from None


def _text(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def _date(info: DocumentInformation | None, name: str) -> str | None:
    if info is None:
        return None
    try:
        value = getattr(info, name)
    except ValueError:  # a date pypdf cannot parse: left out
        return None
    return value.isoformat() if isinstance(value, dt.datetime) else None
