"""Finders for recipes: ingredient and step lists by structure, times and servings by label."""

from __future__ import annotations

import re
from dataclasses import dataclass

import lxml.html

from batchscraper.extraction.coerce import parse_duration_seconds
from batchscraper.extraction.heuristics import words
from batchscraper.extraction.heuristics.articles import Facts
from batchscraper.extraction.heuristics.page import PageReader, text_of
from batchscraper.extraction.heuristics.products import labelled
from batchscraper.extraction.shaping import clean_text

#: A list item longer than this is prose, not an ingredient.
MAX_INGREDIENT_CHARS = 250
MIN_LIST_ITEMS = 2
#: Longest text of an element taken for a section heading ("Ingredients for the dough:").
MAX_HEADING_CHARS = 40
MAX_HEADING_WORDS = 3
_HEADINGS = ("h2", "h3", "h4", "h5", "h6")
_HEADING_LIKE = ("strong", "b", "p", "dt", "span", "div")
_SERVINGS = re.compile(r"^\d{1,3}(?:\s*(?:-|to|\u2013)\s*\d{1,3})?\b")
#: A nutrient's amount at the start of a label's value (``53``, ``3 g``, ``401 kcal``).
_AMOUNT = re.compile(r"^\d+(?:[.,]\d+)?(?:\s?(?:kcal|cal|kj|g|mg)\b)?", re.IGNORECASE)
_INLINE = frozenset({"span", "a", "strong", "b", "em", "i", "label", "small", "mark"})
_NUMBERED = re.compile(r"[-_]?\d+$")


def ingredient_facts(page: PageReader) -> Facts:
    """Ingredient list items: by class name, else the lists under an "Ingredients" heading."""
    items = list_by_class(page, words.INGREDIENT_CLASS, words.STEP_CLASS) or list_by_heading(
        page, words.INGREDIENT_WORDS, words.STEP_WORDS).items
    items = [item for item in items if len(item) <= MAX_INGREDIENT_CHARS]
    return {"recipeIngredient": (items, "structure")} if len(items) >= MIN_LIST_ITEMS else {}


def step_facts(page: PageReader) -> Facts:
    """Method steps: by class name, else the list under an "Instructions" heading, else the
    numbered list, or list of sentences, of the section after the ingredients."""
    items = list_by_class(page, words.STEP_CLASS, words.INGREDIENT_CLASS) or list_by_heading(
        page, words.STEP_WORDS, words.INGREDIENT_WORDS).items
    if not items:
        items = steps_after_ingredients(page)
    return {"recipeInstructions": (items, "structure")} if len(items) >= MIN_LIST_ITEMS else {}


def time_facts(page: PageReader) -> Facts:
    """Times and servings written as ``Total time: 1 hr 10 mins``, ``Serves 4``.

    A page that gives preparation and cooking times but no total has, as total,
    their sum (schema.org's ``totalTime``; the one of them given when alone).
    """
    facts: Facts = {}
    for prop, pattern in (("totalTime", words.TOTAL_TIME_LABEL),
                          ("prepTime", words.PREP_TIME_LABEL),
                          ("cookTime", words.COOK_TIME_LABEL)):
        value = labelled(page.lines, pattern, _duration)
        if value:
            facts[prop] = (value, "label")
    parts = [parse_duration_seconds(facts[prop][0]) for prop in ("prepTime", "cookTime")
             if prop in facts]
    if "totalTime" not in facts and parts and None not in parts:
        facts["totalTime"] = (f"PT{round(sum(p or 0 for p in parts))}S", "label")
    servings = labelled(page.lines, words.SERVINGS_LABEL, _servings)
    if servings:
        facts["recipeYield"] = (servings, "label")
    return facts


def nutrition_facts(page: PageReader) -> Facts:
    """Calories and grams of protein, fat and carbohydrate per serving, as labelled."""
    facts: Facts = {}
    for prop, pattern in (("nutrition.calories", words.CALORIES_LABEL),
                          ("nutrition.proteinContent", words.PROTEIN_LABEL),
                          ("nutrition.fatContent", words.FAT_LABEL),
                          ("nutrition.carbohydrateContent", words.CARBOHYDRATE_LABEL)):
        value = labelled(page.lines, pattern, _amount)
        if value:
            facts[prop] = (value, "label")
    return facts


def _amount(raw: str) -> str | None:
    match = _AMOUNT.match(raw)
    return match.group(0) if match else None


def _duration(raw: str) -> str | None:
    match = words.DURATION_TEXT.match(raw)
    return match.group(0).strip() if match else None


def _servings(raw: str) -> str | None:
    match = _SERVINGS.match(raw)
    return match.group(0) if match else None


def list_by_class(page: PageReader, pattern: re.Pattern[str],
                  other: re.Pattern[str]) -> list[str]:
    """Items whose class or id names what they hold (``wprm-recipe-ingredient``, ``step``).

    The outermost elements that repeat with such a class (inline ones stand for
    the block they are in), else the list items of the innermost list container
    so named. A class naming ``other`` too (``ingredients-instructions``) names
    neither.
    """
    if page.body is None:
        return []
    named = [el for el in page.body.iter() if isinstance(el.tag, str)
             and pattern.search(names := _names(el)) and not other.search(names)]
    groups: dict[tuple[str, str], list[lxml.html.HtmlElement]] = {}
    for element in named:
        block = _block_of(element)
        members = groups.setdefault((block.tag, _class_key(block)), [])
        if block not in members:
            members.append(block)
    repeated = [members for members in groups.values() if len(members) >= MIN_LIST_ITEMS]
    inside = {id(child) for members in repeated for el in members
              for child in el.iterdescendants()}
    outer = [members for members in repeated if not all(id(el) in inside for el in members)]
    if outer:
        return _texts(max(outer, key=lambda members: sum(map(len, map(text_of, members)))))
    containers = [el for el in named if el.tag in ("ul", "ol", "div", "section")
                  and len(el.findall(".//li")) >= MIN_LIST_ITEMS]
    if not containers:
        return []
    innermost = min(containers, key=lambda el: len(el.findall(".//li")))
    return _texts([li for li in innermost.iter("li") if li.find(".//li") is None])


@dataclass(frozen=True)
class Section:
    """What follows a heading: its list items (or paragraphs), and the heading that ended it."""

    items: list[str]
    ordered: bool = False  # the items came from an ``<ol>``
    end: lxml.html.HtmlElement | None = None


def list_by_heading(page: PageReader, start: re.Pattern[str] | None,
                    stop: re.Pattern[str], after: lxml.html.HtmlElement | None = None
                    ) -> Section:
    """What follows headings naming the list (or the element ``after``), up to a heading of
    the next section or the first paragraph of prose after the lists.

    List items when the section has any, else its paragraphs (recipes written
    as one paragraph per ingredient or step).
    """
    if page.body is None:
        return Section([])
    list_items: list[lxml.html.HtmlElement] = []
    paragraphs: list[lxml.html.HtmlElement] = []
    level = 0  # of the heading that opened the section; 0: none yet
    for element in page.body.iter():
        heading = _heading_text(element)
        if (after is not None and element is after) or (
                start is not None and heading is not None and start.search(heading)):
            level = max(level, _level(element))
            continue
        if not level:
            continue
        # a sub-heading ("For the icing") goes on; a sibling or parent heading ends the list
        if heading is not None and (stop.search(heading) or (
                element.tag in _HEADINGS and _level(element) <= level
                and (list_items or paragraphs))):
            return Section(_texts(list_items or paragraphs), _ordered(list_items), element)
        if element.tag == "li" and element.find(".//li") is None:
            list_items.append(element)
        elif element.tag == "p" and _in_list(element) is None:
            if list_items and len(text_of(element)) > MAX_HEADING_CHARS:
                break  # prose after the lists: the section's notes or the next section
            # one paragraph per item: siblings of the first one only
            if paragraphs and element.getparent() is not paragraphs[0].getparent():
                break
            paragraphs.append(element)
    return Section(_texts(list_items or paragraphs), _ordered(list_items))


def steps_after_ingredients(page: PageReader) -> list[str]:
    """The section after the ingredients ("Recipe", "Method" in another word), when it is
    a numbered list or a list of sentences."""
    ingredients = list_by_heading(page, words.INGREDIENT_WORDS, words.STEP_WORDS)
    if ingredients.end is None:
        return []
    section = list_by_heading(page, None, words.INGREDIENT_WORDS, after=ingredients.end)
    sentences = sum(item.rstrip().endswith((".", "!")) for item in section.items)
    return section.items if section.ordered or 2 * sentences >= len(section.items) else []


def _names(element: lxml.html.HtmlElement) -> str:
    return f"{element.get('class') or ''} {element.get('id') or ''}"


def _class_key(element: lxml.html.HtmlElement) -> str:
    """An element's classes without their numbers (``step-3`` and ``step-4`` are alike)."""
    return " ".join(sorted({_NUMBERED.sub("", name) for name in
                            (element.get("class") or "").split()}))


def _block_of(element: lxml.html.HtmlElement) -> lxml.html.HtmlElement:
    """``element``, or the block it sits in when it is inline (a ``<span>`` in an ``<li>``)."""
    while element.tag in _INLINE and element.getparent() is not None:
        element = element.getparent()
    return element


def _in_list(element: lxml.html.HtmlElement) -> lxml.html.HtmlElement | None:
    return next(element.iterancestors("li"), None)


def _ordered(items: list[lxml.html.HtmlElement]) -> bool:
    return bool(items) and all(next(li.iterancestors("ol", "ul"), None) is not None
                               and next(li.iterancestors("ol", "ul")).tag == "ol"
                               for li in items)


def _level(element: lxml.html.HtmlElement) -> int:
    """2-6 for ``<h2>``-``<h6>``; 7 for a bold line or paragraph acting as a heading."""
    return int(element.tag[1]) if element.tag in _HEADINGS else len(_HEADINGS) + 2


def _heading_text(element: lxml.html.HtmlElement) -> str | None:
    """The text of a heading, or of a short bold line or paragraph acting as one."""
    if not isinstance(element.tag, str):
        return None
    if element.tag not in _HEADINGS and not (
            element.tag in _HEADING_LIKE and all(len(child) == 0 for child in element)
            and len(element) <= 1):
        return None
    text = text_of(element)
    if not text or len(text) > MAX_HEADING_CHARS:
        return None
    if element.tag in _HEADINGS or text.endswith(":") or len(text.split()) <= MAX_HEADING_WORDS:
        return text
    return None


def _texts(elements: list[lxml.html.HtmlElement]) -> list[str]:
    texts = (words.LIST_BULLET.sub("", text_of(element)) for element in elements)
    return [clean_text(text) for text in texts if text.strip()]
