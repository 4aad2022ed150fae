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
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database

from batchscraper.exceptions import BatchNotFoundError

SCHEDULES = "schedules"
RUN_FIELDS = {"schema": 0, "prompt": 0, "options": 0, "webhook": 0, "jobs": 0, "timeline": 0}


def new_schedule_id() -> str:
    return f"s_{uuid.uuid4().hex}"


def tick_key(schedule_id: str, tick: dt.datetime) -> str:
    """The unique key of one tick of one schedule."""
    return f"{schedule_id}@{tick.astimezone(dt.UTC).isoformat()}"


class ScheduleStore:
    """The ``schedules`` collection and the batches schedules made."""

    def __init__(self, db: Database) -> None:
        self.schedules = db[SCHEDULES]
        self.batches = db["batches"]

    def ensure_indexes(self) -> None:
        self.schedules.create_index([("owner", ASCENDING), ("created_at", DESCENDING)])
        self.schedules.create_index([("enabled", ASCENDING), ("next_run_at", ASCENDING)])
        self.batches.create_index("schedule_tick", unique=True, sparse=True)
        self.batches.create_index([("schedule.id", ASCENDING), ("created_at", DESCENDING)])

    def insert(self, doc: dict[str, Any]) -> None:
        self.schedules.insert_one(doc)

    def get(self, schedule_id: str) -> dict[str, Any]:
        doc = self.schedules.find_one({"_id": schedule_id})
        if doc is None:
            raise BatchNotFoundError(f"no schedule {schedule_id[:80]!r}")
        return doc

    def page(
        self, query: dict[str, Any], page: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of the schedules that match ``query`` (an owner's), newest first."""
        total = self.schedules.count_documents(query)
        cursor = (
            self.schedules.find(query)
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .skip((page - 1) * limit)
            .limit(limit)
        )
        return list(cursor), total

    def change(self, schedule_id: str, update: dict[str, Any]) -> dict[str, Any]:
        doc = self.schedules.find_one_and_update(
            {"_id": schedule_id}, update, return_document=ReturnDocument.AFTER
        )
        if doc is None:
            raise BatchNotFoundError(f"no schedule {schedule_id[:80]!r}")
        return doc

    def delete(self, schedule_id: str) -> bool:
        return self.schedules.delete_one({"_id": schedule_id}).deleted_count == 1

    def due(self, now: dt.datetime) -> list[dict[str, Any]]:
        """Enabled schedules whose next tick is not after ``now``, most overdue first."""
        query = {"enabled": True, "next_run_at": {"$lte": now}}
        return list(self.schedules.find(query).sort("next_run_at", ASCENDING))

    def advance(self, schedule_id: str, due: dt.datetime, update: dict[str, Any]) -> bool:
        """Apply ``update`` if the schedule still waits for the tick ``due``.

        The tick is the precondition: of two schedulers handling it, only the
        first moves the schedule on (and counts what it did).
        """
        result = self.schedules.update_one({"_id": schedule_id, "next_run_at": due}, update)
        return result.modified_count == 1

    def batch_of_tick(self, key: str) -> dict[str, Any] | None:
        return self.batches.find_one({"schedule_tick": key}, {"_id": 1, "created_at": 1})

    def batch_status(self, batch_id: str) -> dict[str, Any] | None:
        return self.batches.find_one(
            {"_id": batch_id}, {"status": 1, "counters": 1, "created_at": 1, "finished_at": 1,
                                "changes": 1, "monitors": 1}
        )

    def runs(
        self, schedule_id: str, page: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
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
