"""What a due tick does, and the batch it makes (blocking: called from a thread).

Each scan takes the enabled schedules whose ``next_run_at`` has come and,
for each, the tick ``next_run_at`` names:

- ``catch_up: none`` and the tick was found more than
  ``BATCH_SCHEDULE_MISFIRE_GRACE`` seconds late (the service was down): it
  and every later missed tick are dropped (counted as ``missed``);
- the previous run still pending or running: ``overlap: skip`` drops the
  tick (``skipped``); ``overlap: queue`` keeps it waiting (``held_tick``)
  until that run ends;
- otherwise one batch is made for it. ``catch_up: one`` (the default) thus
  gives a single run for any number of ticks missed while the service was
  down; the ticks it covers besides its own are counted as ``missed``.

The batch carries the unique key (schedule, tick), written with the batch
document itself; a second scheduler racing for the same tick (another node,
or this one after a restart half-way) gets a duplicate-key error and only
moves the schedule on. The schedule moves on with the tick as precondition,
so its counters count each tick once. ``clock`` is injectable for tests.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import cast

from pymongo.errors import DuplicateKeyError
from scrapy.settings import BaseSettings

from batchscraper.api.auth import Caller
from batchscraper.api.service import BatchService
from batchscraper.api.submit import read_submission
from batchscraper.exceptions import BatchError, InvalidCompareError
from batchscraper.jsontypes import Document, JSONObject
from batchscraper.schedules.store import LastRun, ScheduleDocument, ScheduleStore, tick_key
from batchscraper.schedules.timing import Timing, parse_timezone
from batchscraper.store import FINAL_BATCH_STATUSES, utcnow
from batchscraper.store.base import document_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScheduleConfig:
    """The ``BATCH_SCHEDULE_*`` settings."""

    enabled: bool
    interval: float
    misfire_grace: float
    seconds_field: bool

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> ScheduleConfig:
        return cls(
            enabled=settings.getbool("BATCH_SCHEDULE_ENABLED"),
            interval=settings.getfloat("BATCH_SCHEDULE_INTERVAL"),
            misfire_grace=settings.getfloat("BATCH_SCHEDULE_MISFIRE_GRACE"),
            seconds_field=settings.getbool("BATCH_SCHEDULE_SECONDS_FIELD"),
        )


@dataclass(frozen=True)
class Fired:
    """What one due tick of one schedule did."""

    schedule_id: str
    tick: dt.datetime
    outcome: str  # run, duplicate, skipped, waiting, missed, failed
    batch_id: str | None = None
    job_ids: list[str] = field(default_factory=list)  # to queue in Scrapyd (outcome "run")


def timing_of(schedule: Mapping[str, object]) -> Timing:
    """The ticks of a schedule (stored, or its fields merged with a PATCH's)."""
    return Timing(str(schedule["cron"]), parse_timezone(schedule["timezone"]))


class Scheduler:
    """Fires due ticks and manual runs into batches through the API's :class:`BatchService`."""

    def __init__(
        self,
        store: ScheduleStore,
        batches: BatchService,
        config: ScheduleConfig,
        clock: Callable[[], dt.datetime] = utcnow,
        default_owner: str | None = None,  # BATCH_API_DEFAULT_OWNER (with API keys on)
    ) -> None:
        self.store = store
        self.batches = batches
        self.config = config
        self.clock = clock
        self.default_owner = default_owner

    def scan(self) -> list[Fired]:
        """Handle every due tick once; what each did."""
        now = self.clock()
        return [self.fire_due(schedule, now) for schedule in self.store.due(now)]

    def fire_due(self, schedule: ScheduleDocument, now: dt.datetime) -> Fired:
        """Run, skip, hold or drop the tick the schedule waits for (its ``next_run_at``)."""
        schedule_id, due = schedule["_id"], schedule["next_run_at"]
        assert due is not None  # store.due() finds only schedules waiting for a tick
        timing = timing_of(schedule)
        held = schedule.get("held_tick") == due
        late = (now - due).total_seconds() > self.config.misfire_grace
        if schedule["catch_up"] == "none" and late and not held:
            missed = 1 + timing.count_between(due, now)
            self._move_on(schedule, due, timing.next_after(now), {"counters.missed": missed})
            logger.info("Schedule %s: %d tick(s) from %s found late, dropped (catch_up none)",
                        schedule_id, missed, due.isoformat())
            return Fired(schedule_id, due, "missed")
        previous = self._unfinished_previous(schedule)
        if previous is not None:
            if schedule["overlap"] == "queue":
                if not held:
                    self.store.advance(schedule_id, due, {"$set": {"held_tick": due}})
                    logger.info("Schedule %s: tick %s waits for run %s (overlap queue)",
                                schedule_id, due.isoformat(), previous)
                return Fired(schedule_id, due, "waiting", previous)
            inc = {"counters.skipped": 1, "counters.missed": timing.count_between(due, now)}
            extra = {"last_skip": {"tick": due, "at": now, "running": previous}}
            self._move_on(schedule, due, timing.next_after(now), inc, extra)
            logger.info("Schedule %s: tick %s skipped, run %s still unfinished (overlap skip)",
                        schedule_id, due.isoformat(), previous)
            return Fired(schedule_id, due, "skipped", previous)
        key = tick_key(schedule_id, due)
        try:
            batch = self.make_run(schedule, "tick", due, key)
        except DuplicateKeyError:  # another scheduler made this tick's batch
            existing = self.store.batch_of_tick(key)
            if existing is None:
                raise
            made = existing["created_at"]
            assert isinstance(made, dt.datetime)
            self._ran(schedule, due, existing, timing, min(now, made))
            return Fired(schedule_id, due, "duplicate", document_id(existing))
        except BatchError as exc:  # the template makes no batch any more (source batch gone)
            error = {"code": exc.code, "message": exc.message, "tick": due, "at": now}
            self._move_on(schedule, due, timing.next_after(now), {"counters.failed": 1},
                          {"last_error": error})
            logger.warning("Schedule %s: tick %s made no batch: %s", schedule_id, due, exc)
            return Fired(schedule_id, due, "failed")
        self._ran(schedule, due, batch, timing, now)
        logger.info("Schedule %s: tick %s made batch %s", schedule_id, due.isoformat(),
                    batch["_id"])
        jobs = cast(list[Mapping[str, str]], batch.get("jobs", []))  # as submit() stored them
        return Fired(schedule_id, due, "run", document_id(batch), [job["id"] for job in jobs])

    def make_run(
        self, schedule: ScheduleDocument, trigger: str, tick: dt.datetime | None, key: str | None
    ) -> Document:
        """A batch from the schedule's template, owned by the schedule's owner."""
        template = dict(schedule["batch"])
        if template.get("name") is None and schedule.get("name"):
            template["name"] = schedule["name"]
        extra: Document = {
            "schedule": {"id": schedule["_id"], "tick": tick, "trigger": trigger}
        }
        if key is not None:
            extra["schedule_tick"] = key
        # a schedule stored without an owner is the default owner's, like such a batch
        caller = Caller(owner=schedule.get("owner") or self.default_owner,
                        default_owner=self.default_owner)
        last_run = schedule.get("last_run")
        previous = last_run["batch_id"] if last_run else None
        if previous and template.get("compare_to") is None:  # compare with the previous run
            try:
                compared = {**template, "compare_to": previous}
                return self._submit(caller, compared, extra)
            except InvalidCompareError as exc:  # its schema changed since, or the run is gone
                logger.info("Schedule %s: run not compared with %s: %s", schedule["_id"],
                            previous, exc)
        return self._submit(caller, template, extra)

    def _submit(
        self, caller: Caller, template: JSONObject, extra: Document
    ) -> Document:
        batch, _ = self.batches.submit(caller, read_submission(template), None, extra=extra)
        return batch

    def record_manual_run(self, schedule: ScheduleDocument, batch: Mapping[str, object]) -> None:
        self.store.change(schedule["_id"], {
            "$set": {"last_run": _last_run(batch, None, "manual")},
            "$inc": {"counters.runs": 1},
        })

    def _ran(
        self,
        schedule: ScheduleDocument,
        due: dt.datetime,
        batch: Mapping[str, object],
        timing: Timing,
        made: dt.datetime,
    ) -> None:
        """Move on past the ticks the run made at ``made`` covers (its own and the missed)."""
        made_at = max(due, made)
        inc = {"counters.runs": 1, "counters.missed": timing.count_between(due, made_at)}
        extra = {"last_run": _last_run(batch, due, "tick"), "last_error": None}
        self._move_on(schedule, due, timing.next_after(made_at), inc, extra)

    def _move_on(
        self,
        schedule: ScheduleDocument,
        due: dt.datetime,
        following: dt.datetime,
        inc: dict[str, int],
        extra: Mapping[str, object] | None = None,
    ) -> bool:
        update: dict[str, Document] = {
            "$set": {"next_run_at": following, **(extra or {})},
            "$inc": {key: value for key, value in inc.items() if value},
            "$unset": {"held_tick": ""},
        }
        if not update["$inc"]:
            del update["$inc"]
        return self.store.advance(schedule["_id"], due, update)

    def _unfinished_previous(self, schedule: ScheduleDocument) -> str | None:
        """The id of the schedule's last run if it is still pending or running."""
        last = schedule.get("last_run")
        if not last or not last["batch_id"]:
            return None
        batch = self.store.batch_status(last["batch_id"])
        if batch is None or batch["status"] in FINAL_BATCH_STATUSES:
            return None
        return last["batch_id"]


def _last_run(batch: Mapping[str, object], tick: dt.datetime | None, trigger: str) -> LastRun:
    created_at = batch["created_at"]
    assert isinstance(created_at, dt.datetime)
    return {"batch_id": document_id(batch), "tick": tick, "trigger": trigger,
            "created_at": created_at}
