"""Where a page of a new shape starts: another shape's rules, or that shape's learning.

A host often has several shapes of one template (an A/B layout) under one
schema. A page whose shape no live template fits first tries the rules of the
key's active templates (:func:`sibling_rules`): rules that fill its required
fields are verified for its shape on held-out pages, no samples needed. When
none fills it and another shape of the key is being learned from answers on
their way (:func:`learning_sibling`), the page waits for that learning, whose
rules may fit it, before its own shape starts learning from samples.
"""

from __future__ import annotations

import time

from batchscraper.llm.merge import is_empty
from batchscraper.templates.learning import PageTemplate
from batchscraper.templates.selectors import Rule, read_values
from batchscraper.templates.store import TemplateDocument


def sibling_rules(live: list[TemplateDocument], page: PageTemplate) -> dict[str, Rule] | None:
    """Rules of an active template of the key (most used first) that fill this page's
    required fields."""
    if page.tree is None:
        return None
    for doc in sorted(live, key=lambda other: -int(other.get("hits") or 0)):
        rules = doc.get("rules") or {}
        if doc["status"] != "active" or not page.ask <= set(rules):
            continue
        values = read_values(page.tree, rules, page.ask)
        if values is not None and all(not is_empty(values.get(name))
                                      for name in page.required & page.ask):
            return dict(rules)
    return None


def learning_sibling(live: list[TemplateDocument], waited: str | None,
                     held_here: frozenset[str]) -> TemplateDocument | None:
    """The key's oldest template learning rules of its own from answers on their way
    (claimed, or its pages wait in this process for them: ``held_here``), which a page of
    a new shape waits for. Not one whose learning waits for pages of its shape, nor one
    verifying an active template's rules (tried already); once the one it waited for
    (``waited``) is done, the page waits for no other."""
    now = time.time()
    learning = [doc for doc in live
                if (doc["status"] == "learning"
                    or (doc["status"] == "verifying" and doc.get("attempts")))
                and (doc["_id"] in held_here
                     or any(claim["until"] > now for claim in doc.get("asking") or []))]
    if waited is not None:
        return next((doc for doc in learning if doc["_id"] == waited), None)
    return learning[0] if learning else None
