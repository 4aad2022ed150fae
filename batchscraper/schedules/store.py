"""Schedules in MongoDB (blocking pymongo: call it from a thread).

``schedules`` holds one document per schedule. A batch made by a schedule
carries ``schedule: {id, tick, trigger}`` and, for a tick, ``schedule_tick``
(``<schedule id>@<tick>``) under a unique index: the key is written with the
batch document itself, so however many schedulers race for a tick (two
Scrapyd nodes, a restart half-way), one batch exists for it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import NotRequired, TypedDict, cast

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database

from batchscraper.exceptions import BatchNotFoundError
from batchscraper.jsontypes import Document, JSONObject, Query

SCHEDULES = "schedules"
RUN_FIELDS = {"schema": 0, "prompt": 0, "options": 0, "webhook": 0, "jobs": 0, "timeline": 0}


class LastRun(TypedDict):
    """A schedule's latest batch."""

    batch_id: str
    tick: dt.datetime | None  # None: a manual run
    trigger: str  # tick, manual
    created_at: dt.datetime


class ScheduleDocument(TypedDict):
    """One schedule as stored."""

    _id: str
    owner: str | None
    name: NotRequired[str | None]
    cron: str
    timezone: str
    catch_up: str
    overlap: str
    enabled: bool
    batch: JSONObject  # the batch template, as POST /batches takes it
    created_at: dt.datetime
    updated_at: dt.datetime
    next_run_at: dt.datetime | None  # None while paused
    held_tick: NotRequired[dt.datetime]  # a tick waiting for the previous run (overlap queue)
    last_run: LastRun | None
    last_error: Document | None
    last_skip: NotRequired[Document]
    counters: dict[str, int]  # runs, skipped, missed, failed


def new_schedule_id() -> str:
    return f"s_{uuid.uuid4().hex}"


def tick_key(schedule_id: str, tick: dt.datetime) -> str:
    """The unique key of one tick of one schedule."""
    return f"{schedule_id}@{tick.astimezone(dt.UTC).isoformat()}"


class ScheduleStore:
    """The ``schedules`` collection and the batches schedules made."""

    def __init__(self, db: Database[Document]) -> None:
        self.schedules = db[SCHEDULES]
        self.batches = db["batches"]

    def ensure_indexes(self) -> None:
        self.schedules.create_index([("owner", ASCENDING), ("created_at", DESCENDING)])
        self.schedules.create_index([("enabled", ASCENDING), ("next_run_at", ASCENDING)])
        self.batches.create_index("schedule_tick", unique=True, sparse=True)
        self.batches.create_index([("schedule.id", ASCENDING), ("created_at", DESCENDING)])

    def insert(self, doc: ScheduleDocument) -> None:
        self.schedules.insert_one(cast(Document, doc))

    def get(self, schedule_id: str) -> ScheduleDocument:
        doc = self.schedules.find_one({"_id": schedule_id})
        if doc is None:
            raise BatchNotFoundError(f"no schedule {schedule_id[:80]!r}")
        return cast(ScheduleDocument, doc)  # written by insert() and change() only

    def page(
        self, query: Query, page: int, limit: int
    ) -> tuple[list[ScheduleDocument], int]:
        """One page of the schedules that match ``query`` (an owner's), newest first."""
        total = self.schedules.count_documents(query)
        cursor = (
            self.schedules.find(query)
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .skip((page - 1) * limit)
            .limit(limit)
        )
        return [cast(ScheduleDocument, doc) for doc in cursor], total

    def change(self, schedule_id: str, update: Mapping[str, object]) -> ScheduleDocument:
        doc = self.schedules.find_one_and_update(
            {"_id": schedule_id}, update, return_document=ReturnDocument.AFTER
        )
        if doc is None:
            raise BatchNotFoundError(f"no schedule {schedule_id[:80]!r}")
        return cast(ScheduleDocument, doc)

    def delete(self, schedule_id: str) -> bool:
        return self.schedules.delete_one({"_id": schedule_id}).deleted_count == 1

    def due(self, now: dt.datetime) -> list[ScheduleDocument]:
        """Enabled schedules whose next tick is not after ``now``, most overdue first."""
        query = {"enabled": True, "next_run_at": {"$lte": now}}
        return [cast(ScheduleDocument, doc)
                for doc in self.schedules.find(query).sort("next_run_at", ASCENDING)]

    def advance(self, schedule_id: str, due: dt.datetime, update: Mapping[str, object]) -> bool:
        """Apply ``update`` if the schedule still waits for the tick ``due``.

        The tick is the precondition: of two schedulers handling it, only the
        first moves the schedule on (and counts what it did).
        """
        result = self.schedules.update_one({"_id": schedule_id, "next_run_at": due}, update)
        return result.modified_count == 1

    def batch_of_tick(self, key: str) -> Document | None:
        return self.batches.find_one({"schedule_tick": key}, {"_id": 1, "created_at": 1})

    def batch_status(self, batch_id: str) -> Document | None:
        return self.batches.find_one(
            {"_id": batch_id}, {"status": 1, "counters": 1, "created_at": 1, "finished_at": 1,
                                "changes": 1, "monitors": 1}
        )

    def runs(
        self, schedule_id: str, page: int, limit: int
    ) -> tuple[list[Document], int]:
        """The schedule's batches, newest first."""
        query = {"schedule.id": schedule_id}
        total = self.batches.count_documents(query)
        cursor = (
            self.batches.find(query, RUN_FIELDS)
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .skip((page - 1) * limit)
            .limit(limit)
        )
        return list(cursor), total
