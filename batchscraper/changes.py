"""What changed for a URL between two runs: an item's ``change`` and the batch's counts of them.

A batch given ``compare_to`` (a schedule's run: its previous run, by default)
compares each finished item with the record of the same URL in that batch:

====================  ===================  ==============================================
before                now                  ``change.status``
====================  ===================  ==============================================
no such URL           completed            ``new``
completed             completed            ``unchanged``, or ``changed`` with ``fields``
completed             failed, HTTP 404/410 ``gone``
completed             failed otherwise     ``failed_now``
failed                completed            ``recovered``
failed or none        failed               no ``change`` (nothing to compare)
====================  ===================  ==============================================

Values are compared as the accuracy scorer compares them: text with its
whitespace collapsed, numbers by value (``17.5 == 17.50``, ``2 == 2.0``).
``fields`` holds each differing top-level field of the record as
``{"old": ..., "new": ...}`` (a list page's records compare as one field,
``data``); ``ignore_fields`` (field paths, ``a.b`` for a nested one) are left
out of the comparison.

The old and new values kept on one change are bounded: beyond
:data:`MAX_CHANGE_VALUE_BYTES` of JSON in all, the largest fields keep only
their sizes, ``{"values_omitted": true, "old_bytes": n, "new_bytes": m}``
(both records hold the values). Unbounded, a record of a few MB whose large
field changed would carry it three times: over MongoDB's 16 MiB document
limit, and in every ``item.changed`` webhook.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict

from batchscraper.jsontypes import Document

CHANGE_STATUSES = ("new", "changed", "unchanged", "gone", "failed_now", "recovered")
GONE_HTTP_STATUSES = frozenset({404, 410})
LIST_FIELD = "data"  # the name a list page's records compare under
MAX_CHANGE_VALUE_BYTES = 256 * 1024  # old and new values kept on one change, JSON bytes in all


class StoredCompare(TypedDict):
    """A batch document's ``compare``."""

    to: str
    ignore_fields: list[str]


@dataclass(frozen=True)
class CompareSpec:
    """What a batch compares its items with: a batch id and the field paths to ignore."""

    to: str
    ignore_fields: tuple[str, ...] = ()

    def stored(self) -> StoredCompare:
        return {"to": self.to, "ignore_fields": list(self.ignore_fields)}

    @classmethod
    def of_batch(cls, batch: Mapping[str, object] | None) -> CompareSpec | None:
        """The batch document's ``compare`` setting, or None when it compares nothing."""
        compare = (batch or {}).get("compare")
        if not compare or not isinstance(compare, Mapping):  # a StoredCompare, or none
            return None
        return cls(str(compare["to"]), tuple(compare.get("ignore_fields") or ()))


def item_change(
    previous: Mapping[str, object] | None,
    record: Mapping[str, object],
    ignore_fields: tuple[str, ...] = (),
) -> Document | None:
    """The ``change`` of a finished record against the same URL's ``previous`` one (or None).

    A previous record that never finished (pending, running or cancelled) counts as none.
    """
    if previous is not None and previous.get("status") not in ("completed", "failed"):
        previous = None
    was_completed = previous is not None and previous.get("status") == "completed"
    if record.get("status") == "completed":
        if previous is None:
            return {"status": "new"}
        if not was_completed:
            return {"status": "recovered"}
        fields = field_changes(previous.get("data"), record.get("data"), ignore_fields)
        if not fields:
            return {"status": "unchanged"}
        return {"status": "changed", "fields": bounded_values(fields, MAX_CHANGE_VALUE_BYTES)}
    if record.get("status") == "failed" and was_completed:
        gone = record.get("http_status") in GONE_HTTP_STATUSES
        return {"status": "gone" if gone else "failed_now"}
    return None


def field_changes(
    old: object, new: object, ignore_fields: tuple[str, ...] = ()
) -> dict[str, Document]:
    """``{field: {"old", "new"}}`` for each top-level field whose normalised value differs."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        if normalised(old, ignore_fields) == normalised(new, ignore_fields):
            return {}
        return {LIST_FIELD: {"old": old, "new": new}}
    ignored = {path for path in ignore_fields if "." not in path}
    changes: dict[str, Document] = {}
    for name in [*old, *(key for key in new if key not in old)]:
        if name in ignored:
            continue
        nested = tuple(path.split(".", 1)[1] for path in ignore_fields
                       if path.startswith(name + "."))
        before, after = old.get(name), new.get(name)
        if normalised(before, nested) != normalised(after, nested):
            changes[name] = {"old": before, "new": after}
    return changes


def bounded_values(fields: Mapping[str, Document], max_bytes: int) -> dict[str, Document]:
    """``fields`` with the old and new values of the largest left out (their sizes kept) until
    the values kept weigh at most ``max_bytes`` of JSON."""
    sizes = {name: (json_size(pair["old"]), json_size(pair["new"]))
             for name, pair in fields.items()}
    total = sum(old + new for old, new in sizes.values())
    bounded = dict(fields)
    for name in sorted(sizes, key=lambda field: sum(sizes[field]), reverse=True):
        if total <= max_bytes:
            break
        old, new = sizes[name]
        bounded[name] = {"values_omitted": True, "old_bytes": old, "new_bytes": new}
        total -= old + new
    return bounded


def json_size(value: object) -> int:
    """Bytes of ``value`` as compact JSON (UTF-8)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())


def normalised(value: object, ignore_fields: tuple[str, ...] = ()) -> object:
    """``value`` as the comparison sees it (whitespace collapsed, numbers as floats), without
    the ``ignore_fields`` paths of its objects (and of each record of a list)."""
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list):
        return [normalised(entry, ignore_fields) for entry in value]
    if isinstance(value, dict):
        kept = _without(value, ignore_fields)
        return {key: normalised(sub) for key, sub in kept.items() if sub is not None}
    return value


def _without(value: dict[str, object], paths: tuple[str, ...]) -> dict[str, object]:
    if not paths:
        return value
    kept = copy.deepcopy(value)
    for path in paths:
        *parents, leaf = path.split(".")
        holder: object = kept
        for part in parents:
            holder = holder.get(part) if isinstance(holder, dict) else None
        if isinstance(holder, dict):
            holder.pop(leaf, None)
    return kept


def change_increments(record: Mapping[str, object], copies: int) -> dict[str, int]:
    """The batch's ``changes.<status>`` increment for one finished record and its ``copies``."""
    change = record.get("change")  # None: nothing compared
    status = change.get("status") if isinstance(change, Mapping) else None
    return {f"changes.{status}": 1 + copies} if status in CHANGE_STATUSES else {}
