"""Page content in the forms a batch's ``formats`` option can keep."""

from __future__ import annotations

import re

import lxml.html
from lxml.etree import ParserError
from markdownify import markdownify

# elements that carry no readable content
PRUNED_TAGS = (
    "script",
    "style",
    "noscript",
    "template",
    "svg",
    "iframe",
    "nav",
    "header",
    "footer",
    "form",
    "aside",
)
BLANK_LINES = re.compile(r"\n\s*\n\s*(\n\s*)+")


def pruned_tree(html: str, base_url: str) -> lxml.html.HtmlElement | None:
    """The page's tree without boilerplate elements, links made absolute."""
    try:
        tree = lxml.html.document_fromstring(html, base_url=base_url)
    except (ParserError, ValueError):
        return None
    for element in tree.xpath("//" + " | //".join(PRUNED_TAGS)):
        element.drop_tree()
    tree.make_links_absolute(base_url, resolve_base_href=True, handle_failures="discard")
    return tree


def page_text(html: str, base_url: str) -> str:
    """Visible text of the page, whitespace collapsed per line."""
    tree = pruned_tree(html, base_url)
    if tree is None:
        return ""
    lines = (" ".join(line.split()) for line in tree.text_content().splitlines())
    return "\n".join(line for line in lines if line)


def page_markdown(html: str, base_url: str) -> str:
    """Compact markdown of the page's content (tables and lists kept)."""
    tree = pruned_tree(html, base_url)
    if tree is None:
        return ""
    body = tree.find("body")
    markup = lxml.html.tostring(body if body is not None else tree, encoding="unicode")
    text = markdownify(markup, heading_style="ATX", strip=["img"])
    return BLANK_LINES.sub("\n\n", text).strip()


def page_content(html: str, base_url: str, formats: tuple[str, ...]) -> dict[str, str] | None:
    """The ``content`` object of an item record for the requested ``formats``."""
    content = {}
    if "html" in formats:
        content["html"] = html
    if "text" in formats:
        content["text"] = page_text(html, base_url)
    if "markdown" in formats:
        content["markdown"] = page_markdown(html, base_url)
    return content or None
