"""Finders for product pages: price, currency and stock near the heading; labelled codes."""

from __future__ import annotations

import re
from collections.abc import Callable

from batchscraper.extraction.coerce import parse_number
from batchscraper.extraction.heuristics import words
from batchscraper.extraction.heuristics.articles import Facts
from batchscraper.extraction.heuristics.page import PageReader

#: Longest text taken after a label (a brand, an identifier).
MAX_LABEL_VALUE = 60
MAX_BRAND_WORDS = 5
_IDENTIFIER = re.compile(r"^[A-Za-z0-9][\w./-]{1,39}$")
_GTIN_DIGITS = re.compile(r"\b(\d{14}|\d{13}|\d{12}|\d{8})\b")
_BARE_NUMBER = re.compile(r"^\d+(?:[.,]\d+)?$")
_UNIT = re.compile(r"^[^\W\d_]{1,12}\.?$")


def offer_facts(page: PageReader) -> Facts:
    """The first selling price after the main heading, its currency, and stock words."""
    facts: Facts = {}
    for line in page.window(lead=0):
        if words.NOT_SELLING_PRICE.search(line):
            continue
        match = words.PRICE.search(line)
        amount = parse_number(match.group("a1") or match.group("a2")) if match else None
        if match and amount:
            facts["offers.price"] = (amount, "pattern")
            marker = (match.group("pre") or match.group("post") or "").strip()
            code = marker if marker in words.ISO_CURRENCIES else words.CURRENCY_SYMBOLS.get(marker)
            if code:
                facts["offers.priceCurrency"] = (code, "pattern")
            break
    # a labelled state first; else the stock words nearest below the heading (further down
    # are other products' cards), and only without any, a word that says "available"
    below = page.window(lead=0)
    availability = labelled(page.window(), words.AVAILABILITY_LABEL, available) or next(
        (state for state in map(stock_state, below) if state), None) or next(
        (state for state in map(available, below) if state), None)
    if availability:
        facts["offers.availability"] = (availability, "pattern")
    return facts


def stock_state(text: str) -> str | None:
    """``InStock``/``OutOfStock`` when ``text`` says so (out-of-stock words first)."""
    if words.OUT_OF_STOCK.search(text):
        return "OutOfStock"
    return "InStock" if words.IN_STOCK.search(text) else None


def available(text: str) -> str | None:
    """:func:`stock_state`, or ``InStock`` when ``text`` only says "available"."""
    return stock_state(text) or ("InStock" if words.AVAILABLE.search(text) else None)


def label_facts(page: PageReader) -> Facts:
    """SKU, MPN, GTIN (check digit verified) and brand written as ``Label: value``."""
    facts: Facts = {}
    window = page.window()
    for prop, pattern, clean in (("sku", words.SKU_LABEL, identifier),
                                 ("mpn", words.MPN_LABEL, identifier),
                                 ("gtin", words.GTIN_LABEL, gtin),
                                 ("brand", words.BRAND_LABEL, brand)):
        value = labelled(window, pattern, clean)
        if value:
            facts[prop] = (value, "label")
    return facts


def labelled(lines: list[str], pattern: re.Pattern[str],
             clean: Callable[[str], str | None]) -> str | None:
    """The first clean value after ``pattern`` on its line, or alone on the next line (with
    its unit when that is on the line after: ``10`` / ``minutes``)."""
    for number, line in enumerate(lines):
        match = pattern.search(line)
        if not match:
            continue
        raw = (match.group("value") or "").strip()
        if not raw and number + 1 < len(lines):
            raw = lines[number + 1]
            if _BARE_NUMBER.match(raw) and number + 2 < len(lines) and _UNIT.match(
                    lines[number + 2]):
                raw = f"{raw} {lines[number + 2]}"
        value = clean(words.NEXT_LABEL.sub("", raw[:MAX_LABEL_VALUE]).strip())
        if value:
            return value
    return None


def identifier(raw: str) -> str | None:
    """The first word of ``raw`` when it looks like a product code (has a digit)."""
    first = raw.split(" ")[0].strip(".,;:()")
    return first if _IDENTIFIER.match(first) and any(c.isdigit() for c in first) else None


def gtin(raw: str) -> str | None:
    """A GTIN-8/12/13/14 in ``raw`` whose check digit is right."""
    match = _GTIN_DIGITS.search(raw.replace(" ", "").replace("-", ""))
    return match.group(1) if match and gtin_valid(match.group(1)) else None


def gtin_valid(digits: str) -> bool:
    """Whether a GTIN's last digit is its check digit."""
    body, check = [int(d) for d in digits[:-1]], int(digits[-1])
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def brand(raw: str) -> str | None:
    """A short name (a few words, no further label in it)."""
    value = raw.strip(" .,;:")
    return value if value and len(value.split()) <= MAX_BRAND_WORDS and not any(
        c in value for c in ":|") else None
