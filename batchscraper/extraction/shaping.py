"""Finding a schema property's value inside a schema.org node and shaping it.

:class:`Shaper` resolves one JSON Schema property against one node: exact key,
case/underscore/camelCase-insensitive key, synonym paths from
:mod:`batchscraper.extraction.synonyms`, then words of the property's
``description``. The raw value is then shaped to the property's type (names
joined into strings, lists for arrays, numbers, booleans, ``YYYY-MM-DD`` dates,
nested objects mapped recursively).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterator
from functools import lru_cache
from typing import cast

from batchscraper.extraction import synonyms as syn
from batchscraper.extraction.coerce import (
    DEFAULT_DURATION_UNIT,
    duration_unit,
    normalize_date,
    parse_bool,
    parse_duration,
    parse_number,
    repair_pattern,
    schema_types,
    to_integer,
)
from batchscraper.jsontypes import JSONObject, JSONValue

Node = JSONObject
#: Joined list items longer than this are separated by newlines, not commas.
LONG_ITEM_CHARS = 80
_TOKEN = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_TAG = re.compile(r"</?[a-zA-Z][^<>]*>")
_BLANKS = re.compile(r"[ \t\r\f\v\u00a0]+")
_PARAGRAPHS = re.compile(r"\s*\n\s*(\n\s*)*")
_SCHEMA_ORG_ENUM = re.compile(r"^https?://schema\.org/([A-Za-z]+)/?$")
_URL = re.compile(r"^(https?:)?//")
#: Unicode categories dropped from text: icon-font glyphs and zero-width marks.
_INVISIBLE = frozenset({"Co", "Cf", "Cs"})
_JOINERS = frozenset({"\u200c", "\u200d"})  # meaningful in Persian, Indic, emoji


@lru_cache(maxsize=4096)
def tokens(name: str) -> tuple[str, ...]:
    """Lower-case word tokens of a key: ``datePublished`` -> ``('date', 'published')``."""
    return tuple(token.lower() for token in _TOKEN.findall(name))


def is_empty(value: object) -> bool:
    """None, empty string, list or dict."""
    return value is None or value == "" or value == [] or value == {}


def node_types(node: Node) -> set[str]:
    """Lower-cased bare ``@type`` names (``http://schema.org/Product`` -> ``product``)."""
    raw = node.get("@type")
    types = raw if isinstance(raw, list) else [raw]
    return {re.split(r"[/#:]", t)[-1].lower() for t in types if isinstance(t, str) and t}


def clean_text(text: str) -> str:
    """Unescape entities; drop stray tags, icon glyphs and zero-width marks; collapse blanks."""
    text = html.unescape(text)
    if not text.isascii():
        text = "".join(ch for ch in text if ch in _JOINERS
                       or unicodedata.category(ch) not in _INVISIBLE)
    if _TAG.search(text):
        text = _TAG.sub(" ", text)
    text = _BLANKS.sub(" ", text)
    return _PARAGRAPHS.sub(lambda m: "\n\n" if m.group(1) else "\n", text).strip()


def _singular_plural(words: tuple[str, ...]) -> tuple[str, ...]:
    last = words[-1]
    if last.endswith("ies"):
        return (*words[:-1], last[:-3] + "y")
    if last.endswith("s") and not last.endswith("ss"):
        return (*words[:-1], last[:-1])
    return (*words[:-1], last + "s")


class Shaper:
    """Looks values up in nodes and shapes them to JSON Schema types."""

    def __init__(self, ids: dict[str, Node], max_depth: int) -> None:
        self.ids = ids
        self.max_depth = max_depth

    # ----------------------------------------------------------------- lookup
    def deref(self, value: JSONValue) -> JSONValue:
        """Replace a bare JSON-LD reference ``{"@id": ...}`` with the node it names."""
        if isinstance(value, dict) and set(value) <= {"@id", "@type"}:
            node_id = value.get("@id")
            return self.ids.get(node_id, value) if isinstance(node_id, str) else value
        return value

    def get_path(self, value: JSONValue, path: list[str]) -> JSONValue:
        """Follow a dotted path; lists fan out (``author.name`` -> every name)."""
        value = self.deref(value)
        if not path:
            return value
        if isinstance(value, list):
            if path[0].isdigit():
                index = int(path[0])
                return self.get_path(value[index], path[1:]) if index < len(value) else None
            found: list[JSONValue] = []
            for item in value:
                sub = self.get_path(item, path)
                found.extend(sub if isinstance(sub, list) else [] if is_empty(sub) else [sub])
            return found or None
        if isinstance(value, dict):
            key = path[0] if path[0] in value else _casefold_key(value, path[0])
            return self.get_path(value[key], path[1:]) if key is not None else None
        return None

    @staticmethod
    def name_variants(name: str) -> list[tuple[str, ...]]:
        """Token tuples to try for a field name, most specific first."""
        base = tokens(name)
        if not base:
            return []
        stripped = base
        while len(stripped) > 1 and stripped[-1] in syn.UNIT_TOKENS:
            stripped = stripped[:-1]
        variants = [base, _singular_plural(base), stripped, _singular_plural(stripped)]
        for words in (base, stripped):
            if len(words) > 1 and words[0] in syn.FAMILY_PREFIX_TOKENS:
                variants += [words[1:], _singular_plural(words[1:])]
        variants.append((*stripped, "content"))
        return list(dict.fromkeys(variants))

    def _candidate_paths(self, node: Node, name: str, schema: JSONObject) -> Iterator[str]:
        keys = {"".join(tokens(k)): k for k in node if not k.startswith("@")}
        key_sets = {tuple(sorted(tokens(k))): k for k in node if not k.startswith("@")}
        if name in node:
            yield name
        for words in self.name_variants(name):
            key = keys.get("".join(words)) or key_sets.get(tuple(sorted(words)))
            if key:
                yield key
            yield from syn.FIELD_PATHS.get("_".join(words), ())
        for word in re.findall(r"[A-Za-z]{3,}", str(schema.get("description") or "")):
            if word.lower() not in syn.HINT_STOPWORDS and word.lower() in keys:
                yield keys[word.lower()]

    def _is_known(self, node: Node, name: str) -> bool:
        """Whether a field name means something in schema.org terms (key or synonym)."""
        keys = {"".join(tokens(k)) for k in node}
        return any("".join(words) in keys or "_".join(words) in syn.FIELD_PATHS
                   for words in self.name_variants(name))

    def find_value(self, node: Node, name: str, schema: JSONObject, depth: int) -> JSONValue:
        """The value of property ``name`` in ``node``, shaped to ``schema``; None if absent."""
        if depth > self.max_depth:
            return None
        entity = False  # whether a key of the name held a node (else only plain values)
        for path in dict.fromkeys(self._candidate_paths(node, name, schema)):
            segments = path.split(".")
            raw = self.get_path(node, segments)
            if is_empty(raw) or (segments[-1] in syn.REFERENCE_KEYS and isinstance(raw, str)
                                 and _URL.match(raw) and not self.wants_url(name, schema)):
                continue
            entity = entity or any(isinstance(self.deref(item), dict)
                                   for item in (raw if isinstance(raw, list) else [raw]))
            value = self.shape(raw, schema, name, segments[-1], depth)
            if not is_empty(value):
                return value
        if "object" in self.types(schema) and (not self._is_known(node, name) or (
                not entity and not self._holds_text(schema))):
            # a grouping field (``identifiers``: sku, gtin, ...) of the same node; a plain
            # value under a like-named key (``identifier``: "8592...") is not that group
            value = self.map_object(node, schema, depth + 1)
            return value or None
        return None

    @staticmethod
    def _holds_text(schema: JSONObject) -> bool:
        """Whether an object schema has a field a plain value would fill (``name``, ``text``)."""
        return any(name in _properties(schema) for name in syn.TEXT_KEYS)

    def map_object(self, node: Node, schema: JSONObject, depth: int) -> JSONObject:
        """Map every property of an object ``schema`` onto ``node``."""
        out: JSONObject = {}
        for name, sub in _properties(schema).items():
            if isinstance(sub, dict):
                value = self.find_value(node, name, sub, depth)
                if not is_empty(value):
                    out[name] = value
        return out

    # ----------------------------------------------------------------- shaping
    @staticmethod
    def types(schema: JSONObject) -> list[str]:
        """Declared non-null types of a schema (inferred when ``type`` is missing)."""
        return [t for t in schema_types(schema) if t != "null"]

    @staticmethod
    def wants_url(name: str, schema: JSONObject) -> bool:
        """Whether a string field holds a link (format uri or a url/image-like name)."""
        return schema.get("format") in ("uri", "iri", "uri-reference") or bool(
            set(tokens(name)) & syn.URL_FIELD_TOKENS)

    def shape(self, raw: JSONValue, schema: JSONObject, name: str, key: str | None,
              depth: int) -> JSONValue:
        """``raw`` shaped to the first declared type it fits; None when it fits none."""
        types = self.types(schema)
        if not types:
            return self._plain(raw)
        for json_type in types:
            value: JSONValue
            if json_type == "object":
                value = self._to_object(raw, schema, depth)
            elif json_type == "array":
                value = self._to_array(raw, schema, name, key, depth)
            elif json_type == "string":
                value = self._to_text(raw, schema, name)
            elif json_type in ("number", "integer"):
                value = self._to_number(raw, name, integer=json_type == "integer")
            elif json_type == "boolean":
                value = next((b for b in map(parse_bool, self._scalars(raw)) if b is not None),
                             None)
            else:
                value = None
            if not is_empty(value):
                return value
        return None

    def _plain(self, raw: JSONValue) -> JSONValue:
        raw = self.deref(raw)
        if isinstance(raw, str):
            return clean_text(raw)
        if isinstance(raw, dict):
            return self._to_text(raw, {}, "")
        if isinstance(raw, list):
            return [value for value in map(self._plain, raw) if not is_empty(value)]
        return raw

    def _scalars(self, raw: JSONValue) -> list[JSONValue]:
        raw = self.deref(raw)
        if isinstance(raw, list):
            return [s for item in raw for s in self._scalars(item)]
        if isinstance(raw, dict):
            return [s for k in ("@value", "value", "availability") if k in raw
                    for s in self._scalars(raw[k])][:1]
        return [raw]

    def _to_object(self, raw: JSONValue, schema: JSONObject, depth: int) -> JSONObject | None:
        for item in raw if isinstance(raw, list) else [raw]:
            item = self.deref(item)
            if isinstance(item, dict):
                mapped = self.map_object(item, schema, depth + 1)
                if mapped:
                    return mapped
        return None

    def _flatten_items(self, raw: JSONValue, key: str | None) -> list[JSONValue]:
        """List elements, HowToSection / ItemList containers expanded in place."""
        out: list[JSONValue] = []
        for item in raw if isinstance(raw, list) else [raw]:
            item = self.deref(item)
            if isinstance(item, dict):
                container = next((k for k in syn.LIST_CONTAINER_KEYS if k in item), None)
                if container and isinstance(item[container], (list, dict)):
                    if "howtosection" in node_types(item) and item.get("name"):
                        out.append({"@type": "HowToStep", "text": item["name"]})
                    out.extend(self._flatten_items(item[container], container))
                elif "listitem" in node_types(item) and isinstance(item.get("item"), dict):
                    out.append(item["item"])
                else:
                    out.append(item)
            elif isinstance(item, str):
                parts = item.split("\n") if "\n" in item.strip() else [item]
                if len(parts) == 1 and key in syn.COMMA_LIST_KEYS:
                    parts = item.split(",")
                out.extend(part for part in (p.strip() for p in parts) if part)
            elif item is not None:
                out.append(item)
        return out

    def _to_array(self, raw: JSONValue, schema: JSONObject, name: str, key: str | None,
                  depth: int) -> list[JSONValue] | None:
        items = schema.get("items")
        items_schema: JSONObject = items if isinstance(items, dict) else {}
        elements = self._flatten_items(raw, key)
        if "object" not in self.types(items_schema):
            shaped = [self.shape(e, items_schema, name, key, depth) for e in elements]
            return [value for value in shaped if not is_empty(value)] or None
        mapped = []
        for element in elements:
            node: Node = (element if isinstance(element, dict)
                          else {"text": element, "name": element})
            record = self.map_object(node, items_schema, depth + 1)
            if record:
                mapped.append(record)
        listed = items_schema.get("required") or []
        required = [r for r in listed if isinstance(r, str)] if isinstance(listed, list) else []
        mapped = [m for m in mapped if all(r in m or r in syn.POSITION_FIELDS for r in required)]
        positions = [name for name, sub in _properties(items_schema).items()
                     if name in syn.POSITION_FIELDS and isinstance(sub, dict)
                     and "integer" in self.types(sub)]
        for rank, record in enumerate(mapped, start=1):
            for position in positions:
                record[position] = rank
        return cast("list[JSONValue]", mapped) or None  # records, never changed again

    def _to_text(self, raw: JSONValue, schema: JSONObject, name: str) -> str | None:
        raw = self.deref(raw)
        wants_url = self.wants_url(name, schema)
        if isinstance(raw, list):
            parts = [p for p in (self._to_text(item, schema, name) for item in raw) if p]
            if not parts:
                return None
            if wants_url or schema.get("format") or schema.get("enum"):
                return parts[0]
            unique = [p for i, p in enumerate(parts) if not any(
                p.casefold() in q.casefold() and (p != q or j < i) for j, q in enumerate(parts)
                if j != i)]
            separator = "\n" if any(len(p) > LONG_ITEM_CHARS for p in unique) else ", "
            return separator.join(unique)
        if isinstance(raw, dict):
            keys = (*syn.URL_KEYS, *syn.TEXT_KEYS) if wants_url else syn.TEXT_KEYS
            for text_key in keys:
                if text_key in raw:
                    text = self._to_text(raw[text_key], schema, name)
                    if text:
                        return text
            parts = [p for p in (self._to_text(raw[k], schema, name)
                                 for k in syn.ADDRESS_KEYS if k in raw) if p]
            if not parts and "address" in raw:
                return self._to_text(raw["address"], schema, name)
            return ", ".join(parts) or None
        if isinstance(raw, bool):
            return "true" if raw else "false"
        if isinstance(raw, (int, float)):
            integral = to_integer(float(raw))
            return str(integral) if integral is not None else str(raw)
        if not isinstance(raw, str):
            return None
        return self._string_value(clean_text(raw), schema, wants_url)

    @staticmethod
    def _string_value(text: str, schema: JSONObject, wants_url: bool) -> str | None:
        if not text:
            return None
        enum_match = _SCHEMA_ORG_ENUM.match(text)
        if enum_match and not wants_url:
            text = enum_match.group(1)
        if schema.get("format") == "date":
            return normalize_date(text)
        if schema.get("format") == "email":
            text = text.removeprefix("mailto:")
        if schema.get("format") == "uri" and not _URL.match(text):
            return None
        enum = schema.get("enum")
        if isinstance(enum, list):
            wanted = re.sub(r"[\s_\-]", "", text).casefold()
            return next((option for option in enum if isinstance(option, str) and
                         re.sub(r"[\s_\-]", "", option).casefold() == wanted), None)
        return repair_pattern(text, schema)

    def _to_number(self, raw: JSONValue, name: str, *, integer: bool) -> int | float | None:
        unit = duration_unit(name)
        for scalar in self._scalars(raw):
            if isinstance(scalar, dict):
                continue
            number = None
            if unit and isinstance(scalar, str):
                number = parse_duration(scalar, unit or DEFAULT_DURATION_UNIT)
                if number is not None and integer:
                    return round(number)
            if number is None:
                number = parse_number(scalar, lenient=True)
            if number is None:
                continue
            if not integer:
                return number
            whole = to_integer(number)
            if whole is not None:
                return whole
        return None


def _properties(schema: JSONObject) -> JSONObject:
    """An object schema's ``properties`` (none when it has none or they are not an object)."""
    properties = schema.get("properties")
    return properties if isinstance(properties, dict) else {}


def _casefold_key(node: Node, key: str) -> str | None:
    wanted = key.casefold()
    return next((k for k in node if k.casefold() == wanted), None)
