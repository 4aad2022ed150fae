"""PDF pages: read with pypdf, extracted like any page; encrypted or broken ones PDF_UNREADABLE.

The PDFs are written by the tests (batchscraper.demo.pdf), never binary fixtures.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from batchscraper.demo.pdf import encrypted_pdf, text_pdf
from batchscraper.demo.site import ExampleSite, product_expected
from batchscraper.exceptions import ContentTooLargeError, PdfUnreadableError
from batchscraper.extraction.pdf import PdfLimits, is_pdf, pdf_document, read_pdf
from batchscraper.store import BatchStore
from tests.conftest import assert_counters_match_items, batch_id_from

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"},
                                           "price": {"type": "number"}},
          "required": ["name", "price"]}
INFO = {"Title": "Annual Report", "Author": "Grace Hopper", "CreationDate": "D:20240307101500Z"}


def test_text_and_document_information_become_a_page() -> None:
    document = read_pdf(text_pdf([["Annual Report", "Revenue: 12 (up)"], ["Page <two>"]], INFO),
                        max_pages=10)
    assert document.record() == {"pages": 2, "pages_read": 2, "title": "Annual Report",
                                 "author": "Grace Hopper", "created": "2024-03-07T10:15:00+00:00",
                                 "modified": None}
    page = document.to_html()
    assert "<title>Annual Report</title>" in page
    assert '<meta name="author" content="Grace Hopper">' in page
    assert '<meta property="article:published_time" content="2024-03-07T10:15:00+00:00">' in page
    assert "<p>Revenue: 12 (up)</p>" in page and "<p>Page &lt;two&gt;</p>" in page


def test_only_the_first_pages_are_read() -> None:
    document = read_pdf(text_pdf([[f"page {n}"] for n in range(1, 6)]), max_pages=2)
    assert (document.pages, len(document.pages_text)) == (5, 2)
    assert "page 3" not in document.to_html()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (encrypted_pdf(text_pdf([["secret"]]), "pw"), "encrypted"),
        (text_pdf([["cut short"]])[:120], "cannot be read"),
        (b"%PDF-1.7\n" + bytes(range(256)) * 4, "cannot be read"),
    ],
)
def test_encrypted_or_broken_pdfs_are_unreadable(body: bytes, says: str) -> None:
    with pytest.raises(PdfUnreadableError) as caught:
        read_pdf(body, max_pages=10)
    assert (caught.value.code, caught.value.retryable) == ("PDF_UNREADABLE", False)
    assert says in caught.value.message


def test_size_and_time_bounds() -> None:
    body = text_pdf([["x"]])
    with pytest.raises(ContentTooLargeError, match="BATCH_PDF_MAX_BYTES"):
        asyncio.run(pdf_document(body, PdfLimits(max_bytes=len(body) - 1)))
    with pytest.raises(PdfUnreadableError, match="BATCH_PDF_TIMEOUT"):
        asyncio.run(pdf_document(body, PdfLimits(timeout=0)))
    assert asyncio.run(pdf_document(body, PdfLimits())).pages == 1


def test_a_pdf_is_known_by_its_type_or_its_bytes() -> None:
    assert is_pdf("application/pdf; charset=binary", b"")
    assert is_pdf("application/octet-stream", b"\n%PDF-1.4 ...")
    assert not is_pdf("application/octet-stream", b"\x89PNG")


@pytest.mark.slow
def test_crawl_extracts_records_from_pdf_pages(
    crawl, site: ExampleSite, store: BatchStore
) -> None:
    paths = ["/pdf/1", "/pdf-unlabelled/2", "/pdf-encrypted/3", "/pdf-broken/4", "/binary"]
    result = crawl(urls=json.dumps([site.url(p) for p in paths]), schema=json.dumps(SCHEMA),
                   options=json.dumps({"retries": 0, "formats": ["json", "text"]}))
    assert result.returncode == 0, result.stderr[-3000:]
    batch_id = batch_id_from(result)
    items = list(store.iter_items(batch_id))
    for item, n in zip(items[:2], (1, 2), strict=True):
        expected = product_expected(n)
        assert item["status"] == "completed", item.get("error")
        assert item["data"] == {"name": expected["name"], "price": expected["price"]}
        assert item["render_mode"] == "pdf"
        assert item["pdf"] == {"pages": 1, "pages_read": 1, "title": expected["name"],
                               "author": expected["brand"], "created": None, "modified": None}
        assert expected["sku"] in item["content"]["text"]
    assert [item["error"]["code"] for item in items[2:]] == [
        "PDF_UNREADABLE", "PDF_UNREADABLE", "UNSUPPORTED_CONTENT_TYPE"]
    assert items[2]["render_mode"] == "pdf" and "encrypted" in items[2]["error"]["message"]
    assert_counters_match_items(store, batch_id)
