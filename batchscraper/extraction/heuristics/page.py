"""One page as the heuristics read it: meta tags, text lines, the main heading.

Each view is computed once, on first use, so a finder the schema does not need
costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cached_property
from typing import TYPE_CHECKING

import lxml.html
from lxml.etree import ParserError

from batchscraper.extraction.shaping import tokens

if TYPE_CHECKING:
    from trafilatura.settings import Document

#: Lines after the main heading where a product's price, labels and stock words are.
WINDOW_LINES = 250
#: Lines before the heading searched too (a brand or code above the name).
LEAD_LINES = 15
#: Shortest share of the heading's text a line must hold to be where the heading is.
HEADING_PART = 0.5
#: Shortest first line of a heading that places it when no line holds most of its text.
HEADING_START_CHARS = 20
#: Share of a heading's words that must be in ``<title>``/og:title for it to be the title.
TITLE_OVERLAP = 0.6
BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
    "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul",
    "button", "label", "option",
})
# never visible, or struck through (an old price)
NON_CONTENT_XPATH = ("//script | //style | //noscript | //template | //svg | //del | //s"
                     " | //strike")
_SPACES = re.compile(r"\s+")


class PageReader:
    """A parsed page and the views of it that finders share."""

    def __init__(self, html: str, url: str) -> None:
        self.html = html
        self.url = url
        try:
            self.tree: lxml.html.HtmlElement | None = lxml.html.document_fromstring(html)
        except (ParserError, ValueError):
            self.tree = None

    @cached_property
    def meta(self) -> dict[str, str]:
        """Every ``<meta name|property|itemprop>`` (lower-cased key) -> content, first wins.

        Read from the whole document: pages with stray markup in ``<head>`` end up
        with their meta tags in ``<body>``, where OpenGraph parsers miss them.
        """
        found: dict[str, str] = {}
        for element in self.tree.iter("meta") if self.tree is not None else ():
            content = (element.get("content") or "").strip()
            for attribute in ("property", "name", "itemprop", "http-equiv"):
                key = (element.get(attribute) or "").strip().lower()
                if key and content:
                    found.setdefault(key, content)
        return found

    @cached_property
    def body(self) -> lxml.html.HtmlElement | None:
        """The tree without scripts, styles and struck-through text."""
        if self.tree is not None:
            for element in self.tree.xpath(NON_CONTENT_XPATH):
                if element.getparent() is not None:
                    element.drop_tree()
        return self.tree

    @cached_property
    def lines(self) -> list[str]:
        """Visible text, one line per block element, in document order."""
        root = self.body.find("body") if self.body is not None else None
        if root is None:
            return []
        text = "".join(block_text(root))
        return [line for line in (_SPACES.sub(" ", part).strip() for part in text.split("\n"))
                if line]

    @cached_property
    def title(self) -> str:
        """``<title>``, whitespace collapsed."""
        found = self.tree.findtext(".//title") if self.tree is not None else None
        return _SPACES.sub(" ", found or "").strip()

    @cached_property
    def title_words(self) -> set[str]:
        """Words of ``<title>`` and og:title, to recognise the headline among headings."""
        return set(tokens(self.title + " " + self.meta.get("og:title", "")))

    @cached_property
    def heading(self) -> str | None:
        """Text of the main ``<h1>``: the one most like the title, else the first."""
        if self.body is None:
            return None
        headings = [text for text in map(text_of, self.body.iter("h1")) if text]
        best = max(headings, key=self.title_overlap, default=None)
        if best is not None and self.title_overlap(best) >= TITLE_OVERLAP:
            return best
        return headings[0] if headings else None

    def title_overlap(self, text: str) -> float:
        """Share of ``text``'s words found in the page title."""
        mine = set(tokens(text))
        return len(mine & self.title_words) / len(mine) if mine else 0.0

    @cached_property
    def heading_line(self) -> int:
        """Index in :attr:`lines` where the main heading is (0 when there is none)."""
        heading = self.heading
        if heading is None:
            return 0
        # a heading with block children spans several lines: match its longest part, else
        # the line it begins with (a name followed by a hidden dialog's text)
        return next((i for i, line in enumerate(self.lines) if heading in line or (
            line in heading and HEADING_PART * len(heading) <= len(line))), None) or next(
            (i for i, line in enumerate(self.lines) if len(line) >= HEADING_START_CHARS
             and heading.startswith(line)), 0)

    def window(self, lead: int = LEAD_LINES) -> list[str]:
        """Lines from ``lead`` above the main heading to :data:`WINDOW_LINES` below it."""
        start = max(0, self.heading_line - lead)
        return self.lines[start:self.heading_line + WINDOW_LINES]

    @cached_property
    def article(self) -> Document:
        """trafilatura's metadata of the page (byline, date, site name)."""
        # imported with the first page that needs it (trafilatura: ~0.15 s of CPU)
        from trafilatura.metadata import extract_metadata

        return extract_metadata(self.html, default_url=self.url, extensive=False)


def text_of(element: lxml.html.HtmlElement) -> str:
    """An element's text, block children separated by a space, whitespace collapsed."""
    return _SPACES.sub(" ", "".join(block_text(element))).strip()


def block_text(element: lxml.html.HtmlElement) -> Iterator[str]:
    """Text pieces of ``element`` with a newline around every block element."""
    if not isinstance(element.tag, str):  # a comment or processing instruction
        yield element.tail or ""
        return
    block = element.tag in BLOCK_TAGS
    if block:
        yield "\n"
    yield element.text or ""
    for child in element:
        yield from block_text(child)
    if block:
        yield "\n"
    yield element.tail or ""
