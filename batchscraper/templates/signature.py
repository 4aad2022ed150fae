"""Page shape: a structural signature that pages of one template share.

A page's shape is the set of its element paths from ``<body>``, each step the
tag plus its digit-free class names and id (``main.product/div.price-box/span.price``),
hashed with CRC-32 so it is stable across processes. Text and positions are
left out, so different text lengths, reordered sections and a missing optional
block change the set a little; page chrome (``nav``, ``header``, ``footer``,
``aside``, forms) is left out too, so a listing and a product page of one site
share little. Two shapes are compared by Jaccard similarity.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import lxml.html

#: subtrees that are the site's chrome, not the page template, or never visible
SKIPPED_TAGS = frozenset({"nav", "header", "footer", "aside", "form", "script", "style",
                          "noscript", "template", "svg", "iframe"})
#: paths deeper than this are cut (deep nesting is mostly inline markup)
MAX_DEPTH = 16
#: class names and ids carrying a digit are generated (``card-123``), not template names
_GENERATED = re.compile(r"\d")


def page_tree(html: str) -> lxml.html.HtmlElement | None:
    """The parsed page, or None when lxml cannot read it."""
    try:
        return lxml.html.document_fromstring(html)
    except (lxml.etree.ParserError, ValueError):
        return None


def page_shape(tree: lxml.html.HtmlElement) -> frozenset[int]:
    """The hashed element paths of the page's body (see the module docstring)."""
    body = tree.find("body")
    if body is None:
        return frozenset()
    shape: set[int] = set()
    stack: list[tuple[lxml.html.HtmlElement, str, int]] = [(child, "", 1) for child in body]
    while stack:
        element, parent, depth = stack.pop()
        tag = element.tag
        if not isinstance(tag, str) or tag in SKIPPED_TAGS:
            continue
        path = f"{parent}/{tag}{_names(element)}"
        shape.add(zlib.crc32(path.encode()))
        if depth < MAX_DEPTH:
            stack.extend((child, path, depth + 1) for child in element)
    return frozenset(shape)


def _names(element: lxml.html.HtmlElement) -> str:
    classes = sorted(c for c in (element.get("class") or "").split() if not _GENERATED.search(c))
    ident = element.get("id") or ""
    names = "".join(f".{c}" for c in classes[:3])
    return names + (f"#{ident}" if ident and not _GENERATED.search(ident) else "")


def similarity(first: Iterable[int], second: Iterable[int]) -> float:
    """Jaccard similarity of two shapes (1.0 for two empty ones)."""
    a, b = set(first), set(second)
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def schema_fingerprint(schema: Mapping[str, object]) -> str:
    """A short hash of the batch schema: templates serve batches of the same schema."""
    text = json.dumps(schema, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      default=str)  # a stored {"$ref", "$id"} reads back as a DBRef
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def site_of(url: str) -> str:
    """The host (and port, when the URL names one) whose pages share templates."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port else host
