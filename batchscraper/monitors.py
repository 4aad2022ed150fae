"""Monitors: checks of a batch's outcome when it ends, spidermon-style, and the alert they raise.

``monitors`` on a batch (or a schedule's template, so on each of its runs)::

    {"min_completed_ratio": 0.95,                 # completed items / items
     "min_field_coverage": {"price": 0.98},       # records with the field / records
     "max_error_ratio": {"HTTP_ERROR": 0.05},     # items failed with the code / items
     "min_records": 100}                          # records extracted

are evaluated once per run, in the step that gives the batch its final
status (cancelled batches are not judged): the results go on the batch as
``monitors: [{name, value, threshold, ok}]`` and, when one fails and the
webhook asked for it, a ``batch.alert`` event goes into the outbox in the
same transaction. Ratios come from the batch's counters; field coverage from
one read of the completed items' monitored fields. A field is covered when
its value is not null, empty text, an empty list or an empty object.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TypedDict, cast

from batchscraper.events import BATCH_ALERT, outbox_event, wants
from batchscraper.exceptions import InvalidMonitorsError
from batchscraper.webhooks import OutboxEvent, batch_links

RATIO_RULES = ("min_completed_ratio",)
FIELD_RULES = ("min_field_coverage",)
CODE_RULES = ("max_error_ratio",)
COUNT_RULES = ("min_records",)
RULES = (*RATIO_RULES, *FIELD_RULES, *CODE_RULES, *COUNT_RULES)
ERROR_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
MAX_ENTRIES = 50


class MonitorRules(TypedDict, total=False):
    """A batch's ``monitor_rules``: the checked ``monitors`` of its submission."""

    min_completed_ratio: float
    min_field_coverage: dict[str, float]  # field path -> ratio
    max_error_ratio: dict[str, float]  # error code -> ratio
    min_records: int


class MonitorResult(TypedDict):
    """One rule judged, on the batch's ``monitors``."""

    name: str
    value: float
    threshold: float
    ok: bool


def read_monitors(value: object, field_paths: list[str]) -> MonitorRules | None:
    """The checked ``monitors`` rules (None when not given), or 422 listing every problem."""
    if value is None:
        return None
    problems: list[tuple[str, str]] = []
    if not isinstance(value, dict) or not value:
        problems.append(("monitors", f"an object with some of {list(RULES)}"))
        value = {}
    for name, rule in value.items():
        where = f"monitors.{name}"
        if name in RATIO_RULES and not _ratio(rule):
            problems.append((where, "a number from 0 to 1"))
        elif name in COUNT_RULES and (isinstance(rule, bool) or not isinstance(rule, int)
                                      or rule < 0):
            problems.append((where, "a whole number, 0 or more"))
        elif name in FIELD_RULES + CODE_RULES:
            problems += _ratio_map(where, rule, field_paths if name in FIELD_RULES else None)
        elif name not in RULES:
            problems.append((where, f"unknown monitor; known: {list(RULES)}"))
    if problems:
        details = [{"field": field, "code": InvalidMonitorsError.code, "message": message}
                   for field, message in problems]
        summary = "; ".join(f"{field}: {message}" for field, message in problems)
        raise InvalidMonitorsError(summary[:2000], details=details)
    return cast(MonitorRules, dict(value))  # every rule checked above


def _ratio(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1


def _ratio_map(where: str, rule: object, field_paths: list[str] | None) -> list[tuple[str, str]]:
    if not isinstance(rule, dict) or not rule or len(rule) > MAX_ENTRIES:
        return [(where, f"an object of 1 to {MAX_ENTRIES} entries, each a number from 0 to 1")]
    problems = []
    for key, ratio in rule.items():
        if field_paths is not None and key not in field_paths:
            problems.append((f"{where}.{key[:80]}", f"not a field of the schema ({field_paths})"))
        elif field_paths is None and not ERROR_CODE.fullmatch(key):
            problems.append((f"{where}.{key[:80]}", "an error code such as HTTP_ERROR"))
        elif not _ratio(ratio):
            problems.append((f"{where}.{key[:80]}", "a number from 0 to 1"))
    return problems


def monitor_results(
    batch: Mapping[str, object], records: Iterable[object]
) -> list[MonitorResult]:
    """Each rule of the batch's ``monitor_rules`` judged: ``{name, value, threshold, ok}``.

    ``records``: the ``data`` of the batch's completed items (for field coverage).
    """
    # stored by read_monitors, which checked every rule
    rules = cast(MonitorRules, batch.get("monitor_rules") or {})
    counters = _numbers(batch.get("counters"))
    total = counters.get("total") or 0
    results: list[MonitorResult] = []

    def judge(name: str, value: float, threshold: float, minimum: bool) -> None:
        ok = value >= threshold if minimum else value <= threshold
        results.append({"name": name, "value": round(value, 4), "threshold": threshold,
                        "ok": ok})

    if "min_completed_ratio" in rules:
        judge("min_completed_ratio", _share(counters.get("completed", 0), total),
              rules["min_completed_ratio"], True)
    for code, threshold in (rules.get("max_error_ratio") or {}).items():
        failed = _numbers(batch.get("failures")).get(code, 0)
        judge(f"max_error_ratio.{code}", _share(failed, total), threshold, False)
    coverage = rules.get("min_field_coverage") or {}
    if coverage:
        present, seen = field_presence(records, list(coverage))
        for field, threshold in coverage.items():
            judge(f"min_field_coverage.{field}", _share(present[field], seen), threshold, True)
    if "min_records" in rules:
        judge("min_records", counters.get("records_extracted", 0), rules["min_records"], True)
    return results


def field_presence(
    datas: Iterable[object], fields: list[str]
) -> tuple[dict[str, int], int]:
    """How many records hold each field (a path ``a.b``), and how many records there are."""
    present = dict.fromkeys(fields, 0)
    seen = 0
    for data in datas:
        for record in data if isinstance(data, list) else [data]:
            if not isinstance(record, dict):
                continue
            seen += 1
            for field in fields:
                if _covered(_value_at(record, field)):
                    present[field] += 1
    return present, seen


def _numbers(value: object) -> Mapping[str, float]:
    """A batch's ``counters`` or ``failures`` (numbers by name); empty when unset."""
    return value if isinstance(value, Mapping) else {}


def _value_at(record: Mapping[str, object], path: str) -> object:
    value: object = record
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _covered(value: object) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    return value is not None and value != [] and value != {}


def _share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def alert_event(
    batch: Mapping[str, object], results: Sequence[MonitorResult]
) -> OutboxEvent | None:
    """The ``batch.alert`` outbox document when a monitor failed and the webhook asked for it."""
    failed = [result for result in results if not result["ok"]]
    webhook = batch.get("webhook")
    if not failed or not wants(webhook, BATCH_ALERT):
        return None
    batch_id = str(batch["_id"])
    data = {"batch_id": batch["_id"], "status": batch["status"], "monitors": failed,
            "counters": batch.get("counters"), "links": batch_links(batch_id)}
    return outbox_event(f"msg_{batch_id}_alert_{batch.get('finished_runs', 1)}",
                        BATCH_ALERT, batch_id, webhook, data)
