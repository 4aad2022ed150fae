"""``compare_to`` and ``ignore_fields`` of a batch body, checked against the store.

``compare_to`` must be a batch of the caller's (another owner's is 403) with
the same schema; ``ignore_fields`` a list of the schema's field paths (``a``
or ``a.b``). Every problem is listed in one 422 ``INVALID_COMPARE``, each as
``{"field", "code", "message"}``, before anything is stored. ``ignore_fields``
alone is kept for a schedule, whose runs compare with the previous run.
"""

from __future__ import annotations

import re

from batchscraper.api.auth import Caller
from batchscraper.changes import CompareSpec
from batchscraper.exceptions import BatchNotFoundError, InvalidCompareError
from batchscraper.inputs.labels import data_field_paths
from batchscraper.store import BatchStore

BATCH_ID = re.compile(r"b_[0-9a-f]{32}")
MAX_IGNORE_FIELDS = 100


def compare_spec(
    store: BatchStore, caller: Caller, compare_to: object, ignore_fields: object, schema: object
) -> CompareSpec | None:
    """The batch's compare setting (None without ``compare_to``), or 422 listing each problem."""
    problems: list[dict[str, str]] = []
    ignored = _ignore_fields(ignore_fields, data_field_paths(schema), problems)
    if compare_to is not None:
        _check_source(store, caller, compare_to, schema, problems)
    if problems:
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        raise InvalidCompareError(summary[:2000], details=problems)
    return None if compare_to is None else CompareSpec(str(compare_to), ignored)


def _check_source(
    store: BatchStore, caller: Caller, compare_to: object, schema: object,
    problems: list[dict[str, str]],
) -> None:
    if not isinstance(compare_to, str) or not BATCH_ID.fullmatch(compare_to):
        problems.append(_problem("compare_to", InvalidCompareError.code,
                                 "a batch id (b_ and 32 hex digits)"))
        return
    source = store.batch_fields(compare_to, ("owner", "schema"))
    if source is None:
        problems.append(_problem("compare_to", BatchNotFoundError.code,
                                 f"no batch {compare_to}"))
        return
    caller.check_access(source)  # 403 for another owner's batch
    if source.get("schema") != schema:
        problems.append(_problem("compare_to", "SCHEMA_MISMATCH",
                                 f"batch {compare_to} has another schema: records of different "
                                 "schemas do not compare"))


def _ignore_fields(value: object, paths: list[str], problems: list[dict[str, str]]) -> tuple[str,
                                                                                          ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_IGNORE_FIELDS:
        problems.append(_problem("ignore_fields", InvalidCompareError.code,
                                 f"a list of at most {MAX_IGNORE_FIELDS} schema field paths"))
        return ()
    kept = []
    for n, entry in enumerate(value):
        known = isinstance(entry, str) and any(
            path == entry or path.startswith(entry + ".") for path in paths
        )
        if not known:
            problems.append(_problem(f"ignore_fields[{n}]", InvalidCompareError.code,
                                     f"not a field of the schema ({paths}): {str(entry)[:80]!r}"))
        else:
            kept.append(entry)
    return tuple(dict.fromkeys(kept))


def _problem(field: str, code: str, message: str) -> dict[str, str]:
    return {"field": field, "code": code, "message": message}
