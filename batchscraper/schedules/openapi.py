"""The OpenAPI entries of ``/schedules`` (merged into :mod:`batchscraper.api.openapi`)."""

from __future__ import annotations

from collections.abc import Callable

from batchscraper.api.openapi_changes import MONITOR_RESULT, STATE_PROPERTIES
from batchscraper.schedules.spec import CATCH_UP, OVERLAP

NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
SCHEDULE_ERRORS = (
    "Invalid cron line, time zone, policy or batch template; details lists every problem "
    "with its field and code (INVALID_SCHEDULE)"
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, object], required: list[str] | None = None, **extra: object
         ) -> dict[str, object]:
    return {"type": "object", "properties": properties, "required": required or [], **extra}


def schedule_schemas() -> dict[str, object]:
    """Component schemas of the schedule endpoints."""
    fields = {
        "name": {"type": "string", "maxLength": 200},
        "cron": {"type": "string", "description": "minute hour day month weekday (cronsim)"},
        "timezone": {"type": "string", "default": "UTC", "description": "IANA name"},
        "catch_up": {"enum": list(CATCH_UP), "default": "one",
                     "description": "ticks missed while the service was down: one run, or none"},
        "overlap": {"enum": list(OVERLAP), "default": "skip",
                    "description": "a tick while the previous run is unfinished: skip it, or "
                                   "queue it until that run ends"},
        "enabled": {"type": "boolean", "default": True},
        "batch": {**_ref("BatchSubmit"),
                  "description": "each run's POST /batches body, or {\"rerun_of\": \"b_...\"} "
                                 "(its inputs, read at every run), with its webhook (events, "
                                 "metadata; the secret is never shown again), monitors (judged "
                                 "on every run) and compare_to / ignore_fields (without "
                                 "compare_to, each run compares with the previous run)"},
    }
    run = _obj({"batch_id": {"type": "string"}, "tick": NULLABLE_TIME,
                "trigger": {"enum": ["tick", "manual"]}, "created_at": {"type": "string"},
                "status": {"type": ["string", "null"]},
                "counters": {"oneOf": [{"type": "null"}, _ref("Counters")]},
                "changes": {"oneOf": [{"type": "null"}, _ref("ChangeCounts")]},
                "monitors": {"oneOf": [{"type": "null"},
                                       {"type": "array", "items": MONITOR_RESULT}]}},
               ["batch_id", "trigger"])
    schedule_of_run = _ref("ScheduleOfRun")
    return {
        "ScheduleOfRun": _obj({"id": {"type": "string"}, "tick": NULLABLE_TIME,
                               "trigger": {"enum": ["tick", "manual"]}}, ["id", "trigger"]),
        "ScheduleCreate": _obj(fields, ["cron", "batch"], additionalProperties=False),
        "ScheduleChange": _obj(fields, additionalProperties=False),
        "Schedule": _obj(
            {
                "schedule_id": {"type": "string", "pattern": "^s_[0-9a-f]{32}$"},
                **{key: value for key, value in fields.items() if key != "name"},
                "name": {"type": ["string", "null"]},
                "next_run_at": {**NULLABLE_TIME, "description": "null while paused"},
                "waiting_since_tick": {**NULLABLE_TIME,
                                       "description": "overlap queue: the tick held back"},
                "last_run": {"oneOf": [{"type": "null"}, run]},
                "last_skip": {"type": ["object", "null"]},
                "last_error": {"type": ["object", "null"]},
                "counters": _obj({key: {"type": "integer", "minimum": 0}
                                  for key in ("runs", "skipped", "missed", "failed")},
                                 ["runs", "skipped", "missed", "failed"]),
                "created_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": "string", "format": "date-time"},
                "links": _obj({key: {"type": "string"} for key in ("self", "runs", "run")},
                              ["self", "runs", "run"]),
            },
            ["schedule_id", "cron", "timezone", "catch_up", "overlap", "enabled",
             "next_run_at", "counters", "batch", "links"],
        ),
        "ScheduleList": _obj({"schedules": {"type": "array", "items": _ref("Schedule")},
                              "pagination": _ref("Pagination")}, ["schedules", "pagination"]),
        "ScheduleRunAccepted": {"allOf": [_ref("BatchAccepted"), _obj(
            {"schedule": schedule_of_run}, ["schedule"])]},
        "ScheduleRuns": _obj(
            {"schedule_id": {"type": "string"},
             "runs": {"type": "array", "items": {"allOf": [_ref("BatchSummary"), _obj(
                 {"schedule": schedule_of_run, **STATE_PROPERTIES},
                 ["schedule", *STATE_PROPERTIES])]}},
             "pagination": _ref("Pagination")},
            ["schedule_id", "runs", "pagination"],
        ),
        "ScheduleDeleted": _obj({"schedule_id": {"type": "string"}, "deleted": {"const": True}},
                                ["schedule_id", "deleted"]),
    }


def schedule_paths(
    operation: Callable[..., dict],
    json_body: Callable[[str, str], dict],
    param: Callable[..., dict],
) -> dict[str, object]:
    """The ``/schedules`` paths, built with the document's own helpers."""
    schedule_id = param("schedule_id", {"type": "string"}, "the schedule id", "path")
    page = param("page", {"type": "integer", "minimum": 1, "default": 1}, "1-based page")
    limit = param("limit", {"type": "integer", "minimum": 1}, "page size")

    def body(name: str) -> dict[str, object]:
        return {"required": True, "content": {"application/json": {"schema": _ref(name)}}}

    return {
        "/schedules": {
            "post": operation(
                "Create a schedule: a batch template fired by a cron line in a time zone",
                {201: json_body("Schedule", "Created (a generated webhook secret shown once)")},
                [400, 401, 403, 413, 415, 422], requestBody=body("ScheduleCreate"),
            ),
            "get": operation("The caller's schedules, newest first",
                             {200: json_body("ScheduleList", "One page of schedules")},
                             [400, 401], parameters=[page, limit]),
        },
        "/schedules/{schedule_id}": {
            "parameters": [schedule_id],
            "get": operation("A schedule: next run, last run and its status, counters",
                             {200: json_body("Schedule", "The schedule")}, [401, 403, 404]),
            "patch": operation(
                "Change fields; enabled false pauses, true resumes (ticks from now)",
                {200: json_body("Schedule", "Changed")},
                [400, 401, 403, 404, 413, 415, 422], requestBody=body("ScheduleChange"),
            ),
            "delete": operation("Delete a schedule (its batches stay)",
                                {200: json_body("ScheduleDeleted", "Deleted")}, [401, 403, 404]),
        },
        "/schedules/{schedule_id}/run": {
            "parameters": [schedule_id],
            "post": operation("A run now, outside the ticks (also when paused)",
                              {202: json_body("ScheduleRunAccepted", "Accepted")},
                              [401, 403, 404, 503]),
        },
        "/schedules/{schedule_id}/runs": {
            "parameters": [schedule_id],
            "get": operation("The schedule's batches, newest first",
                             {200: json_body("ScheduleRuns", "One page of runs")},
                             [400, 401, 403, 404], parameters=[page, limit]),
        },
    }
