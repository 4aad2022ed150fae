"""Deterministic extraction of a record from a page's structured data.

:func:`parse_structured_data` parses the page once and asks extruct only for
JSON-LD, microdata and OpenGraph (RDFa is what makes extruct slow).
:func:`map_to_schema` picks the page's main schema.org entity and maps it onto
the properties of a user's JSON Schema, shaping each value to the declared
type. The schema.org knowledge it uses lives in
:mod:`batchscraper.extraction.synonyms`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import jstyleson
import lxml.html
from w3lib.encoding import html_to_unicode

from batchscraper.extraction import synonyms as syn
from batchscraper.extraction.shaping import Shaper, is_empty, node_types, tokens
from batchscraper.jsontypes import JSONObject, JSONValue

logger = logging.getLogger(__name__)

Node = JSONObject
JSONLD, MICRODATA, OPENGRAPH = "jsonld", "microdata", "og"
#: JSON-LD is preferred; microdata fills what it lacks (OpenGraph comes last).
_SOURCE_RANK = {JSONLD: 0, MICRODATA: 1}
#: How deep nested schema objects are mapped (guards against reference cycles).
MAX_DEPTH = 6
#: How deep the node tree is walked when collecting entities for list fields.
MAX_WALK_DEPTH = 8
_JSONLD_XPATH = '//script[@type="application/ld+json"]'
#: the same scripts found in the page's text, without building its tree: an HTML comment is
#: matched whole (and skipped) where it starts before a script, as a parser would skip it
_JSONLD_SCRIPT = re.compile(
    r"""<!--.*?-->|<script\b[^>]*?\btype\s*=\s*(["']?)application/ld\+json\1(?=[\s/>])[^>]*>"""
    r"""(.*?)</script\s*>""",
    re.IGNORECASE | re.DOTALL,
)
#: a leading comment line that makes a script's JSON unreadable (extruct.jsonld's pattern)
_COMMENT_LINE = re.compile(r"^\s*(//.*|<!--.*-->)")
#: What pages wrap a JSON-LD script's JSON in: CDATA markers and HTML comments, with or
#: without a leading ``//`` (XHTML habits that JSON parsers refuse).
_JSONLD_WRAPPER = re.compile(r"^\s*(?://\s*)?(?:<!\[CDATA\[|<!--)|(?://\s*)?(?:\]\]>|-->)\s*$")
_TITLE_SEPARATORS = (" | ", " - ", " \u2013 ", " \u2014 ", " :: ", " \u00b7 ")


@dataclass(frozen=True)
class StructuredData:
    """Structured data a page carries, parsed once.

    ``jsonld`` has ``@graph`` members flattened into the top-level list;
    ``microdata`` is extruct's uniform output; ``opengraph`` merges every
    OpenGraph-style ``<meta property>`` into one mapping (first non-empty wins,
    ``og:type`` included).
    """

    jsonld: list[Node] = field(default_factory=list)
    microdata: list[Node] = field(default_factory=list)
    opengraph: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when the page carries none of the three syntaxes."""
        return not (self.jsonld or self.microdata or self.opengraph)


# =========================================================================== parsing
def parse_structured_data(
    html: str | bytes, base_url: str, jsonld: list[Node] | None = None
) -> StructuredData:
    """Parse JSON-LD, microdata and OpenGraph from ``html``; never raises.

    Bytes are decoded with the page's declared encoding (BOM, ``<meta charset>``,
    UTF-8 fallback). Broken markup yields empty parts instead of errors, and one
    broken JSON-LD script does not hide the others. ``jsonld``: the page's JSON-LD when
    :func:`jsonld_from_text` already read it.
    """
    try:
        text = html if isinstance(html, str) else html_to_unicode(None, html)[1]
        if not text.strip():
            return StructuredData()
        parser = lxml.html.HTMLParser(encoding="utf-8")
        tree = lxml.html.document_fromstring(text.encode("utf-8", "replace"), parser=parser)
    except Exception:
        logger.debug("could not parse page %s", base_url, exc_info=True)
        return StructuredData()
    return structured_data_from_tree(tree, base_url, jsonld)


def structured_data_from_tree(
    tree: lxml.html.HtmlElement, base_url: str, jsonld: list[Node] | None = None
) -> StructuredData:
    """Same as :func:`parse_structured_data` for a tree the caller already parsed (and the
    page's JSON-LD, when :func:`jsonld_from_text` already read it)."""
    return StructuredData(
        jsonld=_extract_jsonld(tree) if jsonld is None else jsonld,
        microdata=_extract_syntax(tree, base_url, "microdata"),
        opengraph=_merge_opengraph(_extract_syntax(tree, base_url, "opengraph")),
    )


def jsonld_from_text(html: str) -> list[Node]:
    """The page's JSON-LD nodes, read from its ``<script type="application/ld+json">``
    elements by pattern, without parsing the page into a tree (the same nodes
    :func:`parse_structured_data` finds; scripts inside HTML comments are left out)."""
    if "ld+json" not in html:
        return []
    scripts = (match.group(2) for match in _JSONLD_SCRIPT.finditer(html))
    return _jsonld_nodes(script for script in scripts if script is not None)


def _extract_jsonld(tree: lxml.html.HtmlElement) -> list[Node]:
    try:
        scripts = tree.xpath(_JSONLD_XPATH)
    except Exception:
        return []
    return _jsonld_nodes(script.xpath("string()") for script in scripts)


def _jsonld_nodes(scripts: Iterable[str]) -> list[Node]:
    """Top-level JSON-LD nodes of these script texts (as extruct reads them: lenient JSON,
    leading comment lines tolerated, CDATA or comment wrappers removed); an unparsable script
    is skipped, not fatal."""
    items: list[Node] = []
    for script in scripts:
        try:
            try:
                found = json.loads(script, strict=False)
            except ValueError:
                found = jstyleson.loads(_COMMENT_LINE.sub("", script), strict=False)
        except Exception:
            found = _unwrapped_jsonld(script)
            if found is None:
                logger.debug("skipping an unparsable JSON-LD script", exc_info=True)
                continue
        for item in found if isinstance(found, list) else [found]:
            if item:
                items.extend(_flatten_graph(item))
    return items


def _unwrapped_jsonld(script: str) -> JSONValue:
    """The JSON of a script wrapped in CDATA markers or an HTML comment; None if not JSON."""
    text = _JSONLD_WRAPPER.sub("", script)
    text = _JSONLD_WRAPPER.sub("", text.strip())  # both ends may be wrapped twice
    try:
        return json.loads(text, strict=False)
    except ValueError:
        return None


def _flatten_graph(item: JSONValue) -> list[Node]:
    """Top-level nodes of one JSON-LD document, ``@graph`` members inlined."""
    if isinstance(item, list):
        return [node for sub in item for node in _flatten_graph(sub)]
    if not isinstance(item, dict):
        return []
    graph = item.get("@graph")
    if graph is None:
        return [item]
    nodes = [node for sub in (graph if isinstance(graph, list) else [graph])
             for node in _flatten_graph(sub)]
    rest = {key: value for key, value in item.items() if key not in ("@graph", "@context")}
    return ([rest] if "@type" in rest else []) + nodes


def _extract_syntax(tree: lxml.html.HtmlElement, base_url: str, syntax: str) -> list[Node]:
    # imported with the first page JSON-LD does not answer: extruct imports every syntax's
    # extractor (mf2py, bs4, rdflib...), ~0.2 s of CPU that pages answered by JSON-LD never need
    import extruct

    try:
        out = extruct.extract(tree, base_url=base_url, syntaxes=[syntax], uniform=True)
    except Exception:
        logger.debug("extruct %s failed on %s", syntax, base_url, exc_info=True)
        return []
    return [item for item in out.get(syntax, []) if isinstance(item, dict)]


def _merge_opengraph(items: list[Node]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for item in items:
        for key, value in item.items():
            if key == "@context" or not isinstance(value, str) or not value.strip():
                continue
            merged.setdefault("og:type" if key == "@type" else key, value.strip())
    return merged


# =========================================================================== mapping
def map_to_schema(
    sd: StructuredData, schema: JSONObject
) -> tuple[JSONObject, dict[str, str]]:
    """Map the page's structured data onto the top-level properties of ``schema``.

    Returns ``(data, evidence)``: ``data`` holds only the properties that were
    found (shaped to their declared types); ``evidence`` names the syntax each
    came from (``"jsonld"``, ``"microdata"`` or ``"og"``).
    """
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or sd.empty:
        return {}, {}
    try:
        return _Mapper(sd, schema).run()
    except Exception:
        logger.exception("structured-data mapping failed")
        return {}, {}


def guess_family(schema: JSONObject) -> str | None:
    """The record kind (``product``, ``recipe``, ...) a schema most looks like."""
    words: list[str] = list(tokens(str(schema.get("title") or "")))
    properties = schema.get("properties") or {}
    for name, sub in properties.items() if isinstance(properties, dict) else ():
        words.extend(tokens(name))
        if isinstance(sub, dict):
            items = sub.get("items") or {}
            nested = sub.get("properties") or (
                items.get("properties") if isinstance(items, dict) else None) or {}
            for nested_name in nested if isinstance(nested, dict) else ():
                words.extend(tokens(nested_name))
    counts = {family: sum(word in keywords for word in words)
              for family, keywords in syn.FAMILY_KEYWORDS.items()}
    best = max(counts, key=lambda family: counts[family])
    return best if counts[best] else None


def node_families(node: Node) -> set[str]:
    """Families of a node's ``@type`` values."""
    types = node_types(node)
    return {family for family, members in syn.TYPE_FAMILIES.items() if types & members}


class _Mapper:
    """One mapping run: ranks candidate entities, then fills fields in order."""

    def __init__(self, sd: StructuredData, schema: JSONObject) -> None:
        self.sd = sd
        self.schema = schema
        properties = schema["properties"]  # an object: map_to_schema checked it
        self.properties: JSONObject = properties if isinstance(properties, dict) else {}
        self.family = guess_family(schema)
        title = tokens(str(schema.get("title") or ""))
        known_types = set().union(*syn.TYPE_FAMILIES.values())
        self.title_types = {"".join(title)} | (set(title) & known_types)
        self.shaper = Shaper(_index_ids(sd.jsonld), MAX_DEPTH)

    # ----------------------------------------------------------------- driver
    def run(self) -> tuple[JSONObject, dict[str, str]]:
        data: JSONObject = {}
        evidence: dict[str, str] = {}
        for source, mapped in self._ranked_entities():
            for name, value in mapped.items():
                if name not in data:
                    data[name], evidence[name] = value, source
        for name, sub in self.properties.items():
            if name in data or not isinstance(sub, dict):
                continue
            found = self._collection(name, sub) or self._opengraph(name, sub)
            if found:
                data[name], evidence[name] = found
        return {name: data[name] for name in self.properties if name in data}, {
            name: evidence[name] for name in self.properties if name in data}

    # ----------------------------------------------------------------- entities
    def _candidates(self) -> Iterator[tuple[str, Node]]:
        for source, nodes in ((JSONLD, self.sd.jsonld), (MICRODATA, self.sd.microdata)):
            for node in nodes:
                yield source, node
                for key in syn.MAIN_ENTITY_KEYS:
                    for child in _as_list(self.shaper.deref(node.get(key))):
                        if isinstance(child, dict) and "@type" in child:
                            yield source, child

    def _ranked_entities(self) -> list[tuple[str, JSONObject]]:
        """(source, mapped record) for the main entity and compatible fallbacks.

        Entities of the schema's kind come first, then JSON-LD before microdata,
        then the entity that answers most fields, then document order.
        """
        scored = []
        for order, (source, node) in enumerate(self._candidates()):
            types, families = node_types(node), node_families(node)
            wanted = bool(types & self.title_types) or (self.family in families)
            if not wanted and types and types <= syn.BOILERPLATE_TYPES:
                continue
            mapped = self.shaper.map_object(node, self.schema, depth=0)
            if mapped:
                rank = _SOURCE_RANK[source]
                scored.append((not wanted, rank, -len(mapped), order, source, node, mapped))
        if any(not item[0] for item in scored):
            scored = [item for item in scored if not item[0]]
        scored.sort(key=lambda item: item[:4])
        if not scored:
            return []
        primary = scored[0][5]
        return [(source, mapped) for *_, source, node, mapped in scored
                if node is primary or _same_thing(primary, node)]

    def _collection(self, name: str, schema: JSONObject) -> tuple[JSONValue, str] | None:
        """A list field (``events``) filled from every node of the matching type."""
        items = schema.get("items")
        if not isinstance(items, dict) or "array" not in self.shaper.types(schema):
            return None
        words = tokens(name)
        if not words:
            return None
        singular = re.sub(r"(ies|s)$", lambda m: "y" if m.group(1) == "ies" else "", words[-1])
        for source, nodes in ((JSONLD, self.sd.jsonld), (MICRODATA, self.sd.microdata)):
            matches: list[JSONValue] = [node for node in _walk(nodes, MAX_WALK_DEPTH)
                       if singular in node_types(node) or singular in node_families(node)]
            value = self.shaper.shape(matches, schema, name, None, depth=0) if matches else None
            if not is_empty(value):
                return value, source
        return None

    def _opengraph(self, name: str, schema: JSONObject) -> tuple[JSONValue, str] | None:
        og = self.sd.opengraph
        for variant in self.shaper.name_variants(name):
            for key in syn.OG_KEYS.get("_".join(variant), ()):
                raw = og.get(key)
                if not raw or (raw.startswith(("http://", "https://"))
                               and not self.shaper.wants_url(name, schema)):
                    continue
                if key == "og:title":
                    raw = _strip_site_suffix(raw, og.get("og:site_name"))
                elif key == "og:site_name":
                    raw = _without_tagline(raw)
                value = self.shaper.shape(raw, schema, name, key, depth=0)
                if not is_empty(value):
                    return value, OPENGRAPH
        return None


# =========================================================================== helpers
def _as_list(value: JSONValue) -> list[JSONValue]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _index_ids(nodes: list[Node]) -> dict[str, Node]:
    """``@id`` -> the fullest node carrying it, for resolving JSON-LD references."""
    index: dict[str, Node] = {}
    for node in _walk(nodes, MAX_WALK_DEPTH):
        node_id = node.get("@id")
        if isinstance(node_id, str) and len(node) > len(index.get(node_id, {})):
            index[node_id] = node
    return index


def _walk(values: Iterable[JSONValue], depth: int) -> Iterator[Node]:
    """Every dict reachable from ``values`` (pre-order, bounded depth)."""
    for value in values:
        if isinstance(value, dict):
            yield value
            if depth > 0:
                yield from _walk(value.values(), depth - 1)
        elif isinstance(value, list) and depth > 0:
            yield from _walk(value, depth - 1)


def _identity(node: Node) -> str:
    for key in ("name", "headline", "sku", "url"):
        value = node.get(key)
        if isinstance(value, str) and value.strip():
            return re.sub(r"\W+", " ", value).strip().casefold()
    return ""


def _same_thing(primary: Node, other: Node) -> bool:
    """Whether ``other`` plausibly describes the same record as ``primary``."""
    first, second = _identity(primary), _identity(other)
    return not first or not second or first in second or second in first


def _without_tagline(site_name: str) -> str:
    """``Site - Tagline`` -> ``Site``."""
    for separator in _TITLE_SEPARATORS:
        head, found, _ = site_name.partition(separator)
        if found and head.strip():
            return head.strip()
    return site_name


def _strip_site_suffix(title: str, site_name: str | None) -> str:
    """Drop a trailing ``| Site`` from an og:title when it names the site."""
    if not site_name:
        return title
    site = site_name.strip().casefold()
    for separator in _TITLE_SEPARATORS:
        if title.casefold().endswith(separator + site) and len(title) > len(separator + site):
            return title[: -len(separator + site)].strip()
        head, found, tail = title.rpartition(separator)
        tail = tail.strip().casefold()
        if found and head.strip() and tail and (site.startswith(tail) or tail.startswith(site)):
            return head.strip()
    return title
