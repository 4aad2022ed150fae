"""Page content in compact forms: markdown for the LLM and ``formats``, text for grounding.

The page is parsed once (:func:`prepare_page`). Elements that never carry
readable content go first; then boilerplate (navigation, site header and
footer, sidebars, cookie banners, link-dense menus) is pruned, except where it
holds the page's main content (its ``<h1>``, ``<main>`` or ``<article>``):
some sites wrap the whole page in a ``<form>`` or put the title and byline in
a ``<header>``. Markdown conversion is markdownify's (tables and lists kept).
These are CPU-heavy (tens of ms): callers run them off the reactor thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import lxml.html
from lxml.etree import ParserError

# elements that never carry readable content
NON_CONTENT_TAGS = (
    "script", "style", "noscript", "template", "svg", "iframe", "canvas", "object", "embed",
    "link", "meta", "select", "input", "textarea", "button", "dialog",
)
# site chrome, pruned unless it holds the main content
BOILERPLATE_TAGS = ("nav", "header", "footer", "form", "aside")
# class/id words of chrome that is not marked up as such
BOILERPLATE_NAMES = re.compile(
    r"(?:^|[\s_-])(cookie|consent|gdpr|newsletter|subscribe|signup|social|share|sharing|"
    r"related|recommend\w*|comments?|advert\w*|ads?|banner|popup|modal|overlay|sidebar|"
    r"menu|navbar|breadcrumbs?|promo|skip-link|masthead|site-header|site-footer)(?:$|[\s_-])",
    re.IGNORECASE,
)
HIDDEN_XPATH = (
    "//*[@hidden or @aria-hidden='true' or contains(translate(@style, ' ', ''), 'display:none')"
    " or contains(translate(@style, ' ', ''), 'visibility:hidden')]"
)
MAIN_XPATH = "//main | //article | //*[@role='main'] | //h1"
# a block with at least this many links, nearly all of whose text is link text, is a menu
MENU_MIN_LINKS = 8
MENU_LINK_TEXT_RATIO = 0.8
BLANK_LINES = re.compile(r"\n\s*\n\s*(\n\s*)+")
TRAILING_SPACE = re.compile(r"[ \t]+\n")


@dataclass(frozen=True)
class PageContent:
    """What the LLM path needs of a page: compact markdown, and the visible text."""

    markdown: str
    text: str


def _parse(html: str, base_url: str) -> lxml.html.HtmlElement | None:
    try:
        tree = lxml.html.document_fromstring(html, base_url=base_url)
    except (ParserError, ValueError):
        return None
    tree.make_links_absolute(base_url, resolve_base_href=True, handle_failures="discard")
    return tree


def _drop(elements: list[lxml.html.HtmlElement]) -> None:
    for element in elements:
        if element.getparent() is not None:
            element.drop_tree()


def _strip_non_content(tree: lxml.html.HtmlElement) -> None:
    _drop(tree.xpath("//" + " | //".join(NON_CONTENT_TAGS)))
    _drop([el for el in tree.xpath(HIDDEN_XPATH) if el.tag not in ("html", "body")])


def _prune_boilerplate(tree: lxml.html.HtmlElement) -> None:
    """Drop chrome, keeping every ancestor of the main content and headers inside it."""
    main = tree.xpath(MAIN_XPATH)
    keep = {ancestor for el in main for ancestor in el.iterancestors()} | set(main)
    in_main = {el for root in main if root.tag != "h1" for el in root.iterdescendants()}

    def droppable(el: lxml.html.HtmlElement) -> bool:
        return el not in keep and not (el.tag in ("header", "footer") and el in in_main)

    chrome = tree.xpath("//" + " | //".join(BOILERPLATE_TAGS))
    named = [
        el for el in tree.xpath("//body//*[@class or @id]")
        if el.tag not in ("html", "body")
        and BOILERPLATE_NAMES.search(f"{el.get('class', '')} {el.get('id', '')}")
    ]
    _drop([el for el in chrome + named if droppable(el)])
    menus = [
        el for el in tree.xpath("//ul | //ol | //div | //section | //table")
        if el not in keep and _is_menu(el)
    ]
    _drop(menus)


def _is_menu(element: lxml.html.HtmlElement) -> bool:
    links = element.xpath(".//a")
    if len(links) < MENU_MIN_LINKS:
        return False
    text = len(" ".join(element.text_content().split()))
    linked = sum(len(" ".join(a.text_content().split())) for a in links)
    return text > 0 and linked / text >= MENU_LINK_TEXT_RATIO


def _markdown(tree: lxml.html.HtmlElement, keep_links: bool) -> str:
    title = " ".join((tree.findtext(".//title") or "").split())
    body = tree.find("body")
    markup = lxml.html.tostring(body if body is not None else tree, encoding="unicode")
    strip = ["img"] if keep_links else ["img", "a"]
    # imported with the first page made markdown (markdownify imports bs4: ~0.1 s of CPU)
    from markdownify import markdownify

    text = markdownify(markup, heading_style="ATX", strip=strip, bullets="-")
    text = TRAILING_SPACE.sub("\n", text)
    text = _drop_repeated_lines(BLANK_LINES.sub("\n\n", text)).strip()
    return f"Page title: {title}\n\n{text}" if title else text


def _drop_repeated_lines(text: str) -> str:
    """A line identical to the previous non-blank line is dropped (repeated widgets)."""
    out: list[str] = []
    previous = None
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped and stripped == previous:
            continue
        if stripped:
            previous = stripped
        out.append(line)
    return "\n".join(out)


def _visible_text(tree: lxml.html.HtmlElement) -> str:
    lines = (" ".join(line.split()) for line in tree.text_content().splitlines())
    return "\n".join(line for line in lines if line)


def prepare_page(html: str, base_url: str, keep_links: bool = False) -> PageContent:
    """Parse once; the pruned page as markdown, and all visible text (for grounding)."""
    tree = _parse(html, base_url)
    if tree is None:
        return PageContent(markdown="", text="")
    _strip_non_content(tree)
    text = _visible_text(tree)
    _prune_boilerplate(tree)
    return PageContent(markdown=_markdown(tree, keep_links), text=text)


def pruned_tree(html: str, base_url: str) -> lxml.html.HtmlElement | None:
    """The page's tree without boilerplate elements, links made absolute."""
    tree = _parse(html, base_url)
    if tree is not None:
        _strip_non_content(tree)
        _prune_boilerplate(tree)
    return tree


def page_text(html: str, base_url: str) -> str:
    """Visible text of the page's content, whitespace collapsed per line."""
    tree = pruned_tree(html, base_url)
    return "" if tree is None else _visible_text(tree)


def page_markdown(html: str, base_url: str, keep_links: bool = True) -> str:
    """Compact markdown of the page's content (tables and lists kept, links absolute)."""
    tree = pruned_tree(html, base_url)
    return "" if tree is None else _markdown(tree, keep_links)


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


def page_metadata(html: str, base_url: str) -> dict[str, str]:
    """The record of a page read without a schema: title, description, language, canonical
    URL (those the page states)."""
    tree = _parse(html, base_url)
    if tree is None:
        return {}

    def first(xpath: str) -> str:
        values = [" ".join(str(v).split()) for v in tree.xpath(xpath)]
        return next((value for value in values if value), "")

    found = {
        "title": first("//meta[@property='og:title']/@content") or first("//title/text()")
        or first("//h1//text()"),
        "description": first("//meta[@name='description']/@content")
        or first("//meta[@property='og:description']/@content"),
        "language": first("/html/@lang"),
        "canonical_url": first("//link[@rel='canonical']/@href"),
    }
    return {key: value for key, value in found.items() if value}
