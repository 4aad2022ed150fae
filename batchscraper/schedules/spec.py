"""The body of ``POST /schedules`` and ``PATCH /schedules/{id}``, checked field by field.

Every problem is collected before anything is refused: one 422
``INVALID_SCHEDULE`` whose ``details`` lists each as ``{"field", "code",
"message"}`` (the batch template's own problems keep their codes:
``INVALID_URL``, ``INVALID_SCHEMA``, ``INVALID_OPTION``, ``NOT_FOUND`` for an
unknown ``rerun_of``...). A body of the wrong shape is 400 ``INVALID_INPUT``,
as for batches. The batch template is what ``POST /batches`` takes; its URLs,
schema and options are checked against the store by
:meth:`~batchscraper.schedules.scheduler.Scheduler.check_template`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NotRequired, TypedDict, cast

from batchscraper.api.submit import Submission, read_submission
from batchscraper.exceptions import BatchInputError, InvalidScheduleError
from batchscraper.inputs.labels import MAX_NAME
from batchscraper.jsontypes import JSONObject, JSONValue
from batchscraper.schedules.timing import parse_cron, parse_timezone

CATCH_UP = ("one", "none")
OVERLAP = ("skip", "queue")

class ScheduleFields(TypedDict, total=False):
    """A schedule's own fields, as checked (a PATCH: only those given)."""

    name: str | None
    cron: str
    timezone: str
    catch_up: str  # CATCH_UP
    overlap: str  # OVERLAP
    enabled: bool


class Problem(TypedDict):
    """One thing wrong with a schedule body (a 422's ``details`` entry)."""

    field: str
    code: str
    message: NotRequired[str]
    reason: NotRequired[str]


DEFAULTS: ScheduleFields = {"timezone": "UTC", "catch_up": "one", "overlap": "skip",
                            "enabled": True}
SCHEDULE_KEYS = {"name", "cron", "timezone", "catch_up", "overlap", "enabled", "batch"}
REQUIRED = ("cron", "batch")


@dataclass(frozen=True)
class ScheduleInput:
    """The checked fields of a schedule body (only those given, for a PATCH)."""

    fields: ScheduleFields
    template: JSONObject | None  # the batch body, as POST /batches takes it
    submission: Submission | None  # the template read as a submission (for its checks)
    problems: list[Problem]  # what is wrong so far (the template's inputs: not checked)


def read_schedule(body: object, *, seconds_field: bool, partial: bool = False) -> ScheduleInput:
    """Check a schedule body; ``partial``: a PATCH (nothing required, defaults not applied).

    400 for a body of the wrong shape; the problems of its fields are returned, to be
    refused together with the template's (:func:`schedule_problems`).
    """
    if not isinstance(body, dict):
        raise BatchInputError("request body must be a JSON object")
    unknown = set(body) - SCHEDULE_KEYS
    if unknown:
        raise BatchInputError(f"unknown fields {sorted(unknown)}; known: {sorted(SCHEDULE_KEYS)}")
    problems: list[Problem] = []
    fields: ScheduleFields = {} if partial else ScheduleFields(**DEFAULTS)
    if not partial:
        problems += [_problem(name, "missing") for name in REQUIRED if body.get(name) is None]
    checks: dict[str, Callable[[JSONValue], object]] = {
        "name": _name,
        "cron": lambda value: parse_cron(value, seconds_field=seconds_field),
        "timezone": lambda value: parse_timezone(value).key,
        "catch_up": lambda value: _choice(value, CATCH_UP),
        "overlap": lambda value: _choice(value, OVERLAP),
        "enabled": _flag,
    }
    checked: dict[str, object] = {}
    for name, check in checks.items():
        if name not in body or (body[name] is None and name in REQUIRED):
            continue
        try:
            checked[name] = check(body[name])
        except ValueError as exc:
            problems.append(_problem(name, str(exc)))
    fields.update(cast(ScheduleFields, checked))  # each value is what its check returns
    template, submission = None, None
    batch = body.get("batch")
    if batch is not None:
        if isinstance(batch, dict):
            template = batch
        try:
            submission = read_submission(batch)
        except BatchInputError as exc:
            problems += template_problems(exc)
    return ScheduleInput(fields, template, submission, problems)


def template_problems(exc: BatchInputError, field: str | None = None) -> list[Problem]:
    """A batch template's error as schedule problems, each under ``batch.<field>``."""
    entries = exc.details if isinstance(exc.details, list) else [{"message": exc.message}]
    problems = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            entry = {"message": str(entry)}
        inner = entry.get("field") or field
        problem = {**entry, "field": f"batch.{inner}" if inner else "batch",
                   "code": entry.get("code", exc.code)}
        problems.append(cast(Problem, problem))
    return problems


def schedule_problems(problems: list[Problem]) -> InvalidScheduleError:
    """One 422 naming every problem."""
    summary = "; ".join(f"{p['field']}: {p.get('message') or p.get('reason') or p['code']}"
                        for p in problems)
    return InvalidScheduleError(summary[:2000], details=problems)


def _problem(field: str, message: str, code: str = InvalidScheduleError.code) -> Problem:
    return {"field": field, "code": code, "message": message}


def _name(value: JSONValue) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        raise ValueError("printable text, not empty")
    if len(value) > MAX_NAME:
        raise ValueError(f"at most {MAX_NAME} characters")
    return value.strip()


def _choice(value: JSONValue, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"one of {list(choices)}")
    return str(value)


def _flag(value: JSONValue) -> bool:
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value
