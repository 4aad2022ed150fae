"""Make an item record storable in any MongoDB: safe field names, under the document size limit.

Extracted data comes from strangers' pages and users' schemas, so it can hold
what MongoDB refuses or misreads:

- field names starting with ``$`` or containing ``.`` (MongoDB rejects
  ``$``-prefixed names inside update values) or NUL: such names are
  percent-escaped (``%`` -> ``%25``, ``$`` -> ``%24``, ``.`` -> ``%2E``, NUL ->
  ``%00``; :func:`readable_record` reverses it) and the stored record gets
  ``keys_escaped: true``;
- integers beyond 64 bits (BSON has none): stored as decimal strings;
- more than 16 MB in one document: the ``content`` formats are cut, largest
  first, until the record fits ``BATCH_MAX_RECORD_BYTES`` (the record gets
  ``content_truncated: {format: original characters}``); if the record
  still does not fit, its data is dropped and the item fails with
  ``CONTENT_TOO_LARGE``.

Only the stored record changes: feeds (``-O``) get the item as extracted, and
the API serves it with its keys restored.
"""

from __future__ import annotations

from collections.abc import Mapping

import bson

from batchscraper.exceptions import ContentTooLargeError, ErrorInfo
from batchscraper.jsontypes import Document
from batchscraper.store.transitions import failed_record

ESCAPES = {"%": "%25", "$": "%24", ".": "%2E", "\x00": "%00"}
UNESCAPES = {escaped: raw for raw, escaped in ESCAPES.items()}
INT64 = (-(2**63), 2**63 - 1)
# fields whose values are ours and never need escaping
PLAIN_FIELDS = frozenset({"batch_id", "index", "url", "status", "error", "content"})
TRUNCATION_SLACK = 1024  # bytes cut beyond the overflow, for the content_truncated flag itself


def escape_key(key: str) -> str:
    """``key`` with ``%``, ``$``, ``.`` and NUL percent-escaped."""
    if not any(ch in key for ch in ESCAPES):
        return key
    return "".join(ESCAPES.get(ch, ch) for ch in key)


def unescape_key(key: str) -> str:
    """The original of an :func:`escape_key` result."""
    if "%" not in key:
        return key
    out, i = [], 0
    while i < len(key):
        if key[i] == "%" and key[i : i + 3].upper() in UNESCAPES:
            out.append(UNESCAPES[key[i : i + 3].upper()])
            i += 3
        else:
            out.append(key[i])
            i += 1
    return "".join(out)


def safe_value(value: object) -> tuple[object, bool]:
    """``value`` with every nested key escaped and oversized integers as text; (value, changed)."""
    if isinstance(value, dict):
        changed = False
        out: dict[str, object] = {}
        for key, sub in value.items():
            text = key if isinstance(key, str) else str(key)
            safe_key = escape_key(text)
            out[safe_key], sub_changed = safe_value(sub)
            changed = changed or sub_changed or safe_key != key
        return (out, True) if changed else (value, False)
    if isinstance(value, list):
        items = [safe_value(sub) for sub in value]
        if any(sub_changed for _, sub_changed in items):
            return [sub for sub, _ in items], True
        return value, False
    if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
        return str(value), True
    return value, False


def restored_value(value: object) -> object:
    """``value`` with every nested key as it was before :func:`safe_value` escaped it."""
    if isinstance(value, dict):
        return {unescape_key(key): restored_value(sub) for key, sub in value.items()}
    if isinstance(value, list):
        return [restored_value(sub) for sub in value]
    return value


def readable_record(stored: Document) -> Document:
    """A stored record with its field names as extracted (what the API and exports serve)."""
    if not stored.get("keys_escaped"):
        return stored
    return {
        name: value if name in PLAIN_FIELDS else restored_value(value)
        for name, value in stored.items()
        if name != "keys_escaped"
    }


def storable_record(
    record: Mapping[str, object], max_bytes: int
) -> tuple[Document, ErrorInfo | None]:
    """The record as it can be stored, and the error that failed it (None if it kept its status).

    ``max_bytes`` bounds the BSON size of the record (keep it under MongoDB's
    16 MiB, with room for the rest of the item document).
    """
    stored = dict(record)
    escaped = False
    for name, value in record.items():
        if name not in PLAIN_FIELDS:
            stored[name], changed = safe_value(value)
            escaped = escaped or changed
    if escaped:
        stored["keys_escaped"] = True
    size = len(bson.encode(stored))
    if size <= max_bytes:
        return stored, None
    size = _truncate_content(stored, size, max_bytes)
    if size <= max_bytes:
        return stored, None
    error = ContentTooLargeError(
        f"the record is {size} bytes after truncating its content; the limit is {max_bytes}"
    ).to_dict()
    return failed_record(stored, error), error


def _truncate_content(record: Document, size: int, max_bytes: int) -> int:
    """Cut ``content`` strings, largest first, until the record fits; returns the new size."""
    formats = record.get("content")
    # a PageItem's content: text by format
    content: dict[str, str | None] = dict(formats) if isinstance(formats, Mapping) else {}
    truncated: dict[str, int] = {}
    for name in sorted(content, key=lambda n: len(content[n] or ""), reverse=True):
        if size <= max_bytes:
            break
        text = content[name]
        if not isinstance(text, str) or not text:
            continue
        raw = text.encode()
        keep = max(len(raw) - (size - max_bytes) - TRUNCATION_SLACK, 0)
        content[name] = raw[:keep].decode("utf-8", "ignore")
        truncated[name] = len(text)
        record["content"] = content
        record["content_truncated"] = truncated
        size = len(bson.encode(record))
    return size
