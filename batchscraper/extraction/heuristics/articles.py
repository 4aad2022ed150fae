"""Finders for what every page has: title, meta tags, ``itemprop``, byline, date, body.

A finder takes a :class:`.page.PageReader` and returns facts: schema.org
property paths mapped to ``(value, evidence)``.
"""

from __future__ import annotations

import re

from batchscraper.extraction.coerce import normalize_date
from batchscraper.extraction.heuristics import words
from batchscraper.extraction.heuristics.page import TITLE_OVERLAP, PageReader, text_of

Facts = dict[str, tuple[str | float | list[str], str]]  # schema.org path -> (value, evidence)

#: Paths of product properties found in meta tags and ``itemprop``.
OFFER_PATHS = {"price": "offers.price", "priceCurrency": "offers.priceCurrency",
               "availability": "offers.availability"}
ITEMPROPS = ("price", "priceCurrency", "availability", "sku", "gtin13", "gtin", "gtin12",
             "gtin8", "mpn", "brand", "author", "datePublished", "recipeIngredient",
             "recipeYield", "totalTime", "prepTime", "cookTime")


def title_facts(page: PageReader) -> Facts:
    """The main heading when the page title agrees, else og:title, else ``<title>``."""
    heading = page.heading
    if heading and page.title_overlap(heading) >= TITLE_OVERLAP:
        title = (heading, "heading")
    elif page.meta.get("og:title") or page.meta.get("twitter:title"):
        title = (page.meta.get("og:title") or page.meta["twitter:title"], "meta")
    elif page.title:
        title = (strip_site_name(page.title), "title")
    elif heading:
        title = (heading, "heading")
    else:
        return {}
    return {"headline": title, "name": title}


def meta_facts(page: PageReader) -> Facts:
    """Article and product properties from ``<meta>`` tags, and ``<html lang>``."""
    facts: Facts = {}
    for prop, keys in words.META_KEYS.items():
        value = next((page.meta[key] for key in keys if page.meta.get(key)), None)
        if value is None or (prop == "author" and value.startswith(("http:", "https:"))):
            continue
        facts[OFFER_PATHS.get(prop, prop)] = (CLEANERS.get(prop, str.strip)(value), "meta")
    lang = page.tree.get("lang") if page.tree is not None else None
    if lang:
        facts.setdefault("inLanguage", (lang, "meta"))
    return facts


def itemprop_facts(page: PageReader) -> Facts:
    """``itemprop`` values that microdata parsing missed (no ``itemscope`` around them)."""
    facts: Facts = {}
    ingredients: list[str] = []
    for element in page.tree.xpath("//*[@itemprop]") if page.tree is not None else ():
        for prop in (element.get("itemprop") or "").split():
            if prop not in ITEMPROPS:
                continue
            value = (element.get("content") or element.get("href") or element.get("datetime")
                     or text_of(element))
            if prop == "recipeIngredient" and value:
                ingredients.append(value)
            elif value:
                facts.setdefault(OFFER_PATHS.get(prop, prop),
                                 (CLEANERS.get(prop, str.strip)(value), "itemprop"))
    if ingredients:
        facts["recipeIngredient"] = (ingredients, "itemprop")
    return facts


def byline_facts(page: PageReader) -> Facts:
    """Byline, publication date and site name as trafilatura reads them."""
    doc = page.article
    facts: Facts = {}
    if doc.author:
        facts["author"] = (clean_author(doc.author), "trafilatura")
    if doc.date:
        facts["datePublished"] = (doc.date, "trafilatura")
    if doc.sitename:
        facts["publisher"] = (site_name(doc.sitename), "trafilatura")
    return facts


def body_facts(page: PageReader) -> Facts:
    """The article's main text (trafilatura), paragraphs separated by blank lines."""
    import trafilatura  # imported with the first article page: ~0.15 s of CPU, with htmldate

    doc = trafilatura.bare_extraction(page.html, url=page.url, with_metadata=False,
                                      include_comments=False, include_tables=False)
    text = getattr(doc, "text", None) if doc is not None else None
    if not text:
        return {}
    paragraphs = [line.strip() for line in text.split("\n") if line.strip()]
    if paragraphs and paragraphs[0] in (page.heading, page.meta.get("og:title")):
        paragraphs = paragraphs[1:]  # the headline is a field of its own
    body = "\n\n".join(paragraphs)
    return {"articleBody": (body, "trafilatura"), "text": (body, "trafilatura")}


def date_facts(page: PageReader) -> Facts:
    """The first ``<time datetime>``, else htmldate's reading of the markup."""
    if page.tree is None:
        return {}
    for element in page.tree.iter("time"):
        date = normalize_date(element.get("datetime") or "")
        if date:
            return {"datePublished": (date, "time")}
    # a parsed tree, never a string: htmldate fetches strings that look like URLs
    import htmldate  # imported with the first article page (see body_facts)

    date = htmldate.find_date(page.tree, extensive_search=False, original_date=True)
    return {"datePublished": (date, "htmldate")} if date else {}


def strip_site_name(title: str) -> str:
    """``Headline | Site`` -> ``Headline`` (the longest part when separators split it)."""
    parts = [part.strip() for part in words.TITLE_SEPARATORS.split(title) if part.strip()]
    return max(parts, key=len) if len(parts) > 1 else title.strip()


def site_name(raw: str) -> str:
    """``Site - Tagline`` -> ``Site``."""
    return words.TITLE_SEPARATORS.split(raw.strip())[0].strip()


def clean_author(raw: str) -> str:
    """A byline without "By", roles, dates, trailing lower-case words and repeats."""
    names: list[str] = []
    for part in re.split(r"\s*[;|]\s*", raw):
        name = words.BYLINE_TAIL.sub("", words.BYLINE_PREFIX.sub("", part)).strip(" ,.")
        kept = name.split()
        while len(kept) > 1 and kept[-1][:1].islower():  # "Jane Doe před", "... and"
            kept.pop()
        name = " ".join(kept)
        if any(c.isdigit() for c in name):
            continue  # a date or a time, not a name
        if name and name.casefold() not in {n.casefold() for n in names}:
            names.append(name)
    return ", ".join(names)


#: How the text of a byline or site name found in the markup is cleaned.
CLEANERS = {"author": clean_author, "publisher": site_name}
