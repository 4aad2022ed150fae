"""List pages (``max_items_per_url`` > 1): records from structured data, and a visible count.

:func:`structured_records` maps every schema.org entity of the schema's kind
(an ``ItemList`` of products, a page of events) onto the record schema.
:func:`visible_record_count` counts the page's repeated "cards" (sibling
blocks with the same tag and class), so an item can be flagged when the page
visibly holds more records than were extracted.
"""

from __future__ import annotations

from collections import Counter

import lxml.html

from batchscraper.extraction import synonyms as syn
from batchscraper.extraction.structured import StructuredData, guess_family, map_to_schema
from batchscraper.jsontypes import JSONObject

CARD_TAGS = frozenset({"div", "li", "article", "section", "tr"})
#: a card has at least this many elements inside and this much text
CARD_MIN_ELEMENTS = 2
CARD_MIN_TEXT = 8
#: fewer repeated blocks than this are not a list
MIN_CARDS = 2


def structured_records(
    sd: StructuredData, schema: JSONObject
) -> tuple[list[JSONObject], dict[str, str]]:
    """Records (and per-field evidence) for a list page, from its structured data."""
    family = guess_family(schema)
    families = [family] if family else []
    families += [name for name in syn.TYPE_FAMILIES if name != family]
    for name in families:
        key = f"{name}s"
        wrapper: JSONObject = {
            "type": "object", "properties": {key: {"type": "array", "items": schema}}}
        data, evidence = map_to_schema(sd, wrapper)
        found = data.get(key) or []
        records = [r for r in found if isinstance(r, dict) and r] if isinstance(found, list) else []
        if records:
            source = evidence.get(key, "jsonld")
            fields = {field for record in records for field in record}
            properties = schema.get("properties", {})
            return records, {field: source for field in properties
                             if field in fields} if isinstance(properties, dict) else {}
    record, evidence = map_to_schema(sd, schema)
    return ([record], evidence) if record else ([], {})


def visible_record_count(tree: lxml.html.HtmlElement | None) -> int:
    """The size of the largest group of sibling cards with the same tag and class (0: none)."""
    if tree is None:
        return 0
    best = 0
    for parent in tree.iter():
        if not isinstance(parent.tag, str):
            continue
        signatures: Counter[tuple[str, str]] = Counter()
        for child in parent:
            if isinstance(child.tag, str) and child.tag in CARD_TAGS and _is_card(child):
                signatures[(child.tag, " ".join(sorted(child.get("class", "").split())))] += 1
        if signatures:
            best = max(best, max(signatures.values()))
    return best if best >= MIN_CARDS else 0


def _is_card(element: lxml.html.HtmlElement) -> bool:
    inner = sum(1 for child in element.iter() if isinstance(child.tag, str)) - 1
    if inner < CARD_MIN_ELEMENTS:
        return False
    return len(" ".join(element.text_content().split())) >= CARD_MIN_TEXT
