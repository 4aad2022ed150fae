"""Schedules in process: ticks (cron, time zones, DST), catch-up and overlap policies, exactly one
batch per tick with two schedulers racing, and bad input. A clock the test sets stands in for
time; assertions read the stored documents.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from scrapy.settings import Settings

from batchscraper.api.auth import Caller
from batchscraper.api.config import ApiConfig
from batchscraper.api.service import BatchService
from batchscraper.exceptions import ForbiddenError, InvalidScheduleError
from batchscraper.inputs import parse_batch
from batchscraper.schedules.scheduler import ScheduleConfig, Scheduler
from batchscraper.schedules.service import ScheduleService
from batchscraper.schedules.store import ScheduleStore
from batchscraper.schedules.timing import Timing, parse_timezone
from batchscraper.store import BatchStore
from batchscraper.store.mongo import connect

FIELDS = [{"field": "name", "type": "string"}, {"field": "price", "type": "number"}]
URLS = ["https://shop.example/p/1", "https://shop.example/p/2"]
T0 = dt.datetime(2026, 6, 1, 12, 0, 30, tzinfo=dt.UTC)
ALICE, BOB = Caller("alice"), Caller("bob")


@dataclass
class Clock:
    now: dt.datetime

    def __call__(self) -> dt.datetime:
        return self.now

    def at(self, when: dt.datetime) -> Clock:
        self.now = when
        return self


@dataclass
class Setup:
    store: BatchStore
    clock: Clock
    service: ScheduleService
    scheduler: Scheduler

    def create(self, caller: Caller = ALICE, **body: Any) -> dict[str, Any]:
        body.setdefault("batch", {"urls": URLS, "fields": FIELDS})
        return self.service.create(caller, body)[0]

    def schedule(self, schedule_id: str) -> dict[str, Any]:
        return self.service.store.get(schedule_id)

    def runs(self, schedule_id: str) -> list[dict[str, Any]]:
        return list(self.store.batches.find({"schedule.id": schedule_id}).sort("created_at", 1))

    def scan_at(self, when: dt.datetime) -> list[str]:
        self.clock.at(when)
        return [fired.outcome for fired in self.scheduler.scan()]


def make_scheduler(store: BatchStore, clock: Clock, grace: float = 60) -> Scheduler:
    settings = Settings()
    settings.setmodule("batchscraper.settings")
    batches = BatchService(store, ApiConfig.from_settings(settings))
    config = ScheduleConfig(enabled=True, interval=1, misfire_grace=grace, seconds_field=False)
    return Scheduler(ScheduleStore(store.db), batches, config, clock)


@pytest.fixture(name="setup")
def setup_fixture(mongo_uri: str) -> Iterator[Setup]:
    """A database of its own per test: the scheduler scans every schedule stored."""
    client = connect(mongo_uri)
    store = BatchStore(client, f"sched_{uuid.uuid4().hex[:12]}")
    store.ensure_indexes()
    clock = Clock(T0)
    scheduler = make_scheduler(store, clock)
    scheduler.store.ensure_indexes()
    yield Setup(store, clock, ScheduleService(scheduler.store, scheduler, scheduler.batches),
                scheduler)
    client.drop_database(store.db.name)
    client.close()


def minutes(n: float) -> dt.timedelta:
    return dt.timedelta(minutes=n)


# -- ticks -----------------------------------------------------------------------------------


def test_daily_ticks_follow_the_zone_through_both_dst_changes() -> None:
    berlin = Timing("30 2 * * *", parse_timezone("Europe/Berlin"))
    spring = berlin.ticks_after(dt.datetime(2026, 3, 28, 12, tzinfo=dt.UTC))
    # 02:30 does not exist on 29 March: the run is at 03:00 CEST (01:00 UTC), once
    assert [next(spring) for _ in range(2)] == [
        dt.datetime(2026, 3, 29, 1, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 30, 0, 30, tzinfo=dt.UTC),
    ]
    autumn = berlin.ticks_after(dt.datetime(2026, 10, 24, 12, tzinfo=dt.UTC))
    # 02:30 happens twice on 25 October: one run, at the first (CEST, 00:30 UTC)
    assert [next(autumn) for _ in range(2)] == [
        dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC),
        dt.datetime(2026, 10, 26, 1, 30, tzinfo=dt.UTC),
    ]
    hourly = Timing("0 * * * *", parse_timezone("Europe/Berlin"))
    # the repeated hour is a real hour: 25 hourly ticks on the 25-hour day
    start = dt.datetime(2026, 10, 24, 22, 0, tzinfo=dt.UTC)  # midnight in Berlin
    assert hourly.count_between(start, start + dt.timedelta(hours=25)) == 25


def test_next_run_is_the_first_tick_in_the_schedules_zone(setup: Setup) -> None:
    doc = setup.create(cron="0 3 * * *", timezone="America/New_York", name="nightly")
    assert doc["next_run_at"] == dt.datetime(2026, 6, 2, 7, 0, tzinfo=dt.UTC)  # 03:00 EDT
    assert (doc["catch_up"], doc["overlap"], doc["enabled"], doc["owner"]) == (
        "one", "skip", True, "alice")


# -- one batch per tick ----------------------------------------------------------------------


def test_each_tick_makes_one_batch_named_after_the_schedule(setup: Setup) -> None:
    doc = setup.create(cron="*/10 * * * *", name="prices")
    first = doc["next_run_at"]
    assert first == dt.datetime(2026, 6, 1, 12, 10, tzinfo=dt.UTC)
    assert setup.scan_at(first - dt.timedelta(seconds=1)) == []
    for n in range(3):
        tick = first + minutes(10 * n)
        assert setup.scan_at(tick + dt.timedelta(seconds=2)) == ["run"]
        assert setup.scan_at(tick + dt.timedelta(seconds=3)) == []  # nothing due twice
        # the previous run ends before the next tick (overlap is another test)
        setup.store.cancel_batch(setup.runs(doc["_id"])[-1]["_id"])
    runs = setup.runs(doc["_id"])
    assert [run["schedule"]["tick"] for run in runs] == [first + minutes(10 * n) for n in range(3)]
    assert {run["name"] for run in runs} == {"prices"}
    assert {run["owner"] for run in runs} == {"alice"}
    assert runs[0]["counters"]["total"] == 2 and runs[0]["source"] == "api"
    stored = setup.schedule(doc["_id"])
    assert stored["counters"] == {"runs": 3, "skipped": 0, "missed": 0, "failed": 0}
    assert stored["next_run_at"] == first + minutes(30)
    assert stored["last_run"]["batch_id"] == runs[-1]["_id"]


def test_two_schedulers_racing_make_one_batch_per_tick(setup: Setup, mongo_uri: str) -> None:
    """Two API nodes on one MongoDB: each scans at the same instant, on its own connection."""
    doc = setup.create(cron="* * * * *")
    other_client = connect(mongo_uri)
    other = make_scheduler(BatchStore(other_client, setup.store.db.name), setup.clock)
    outcomes: list[str] = []
    try:
        for n in range(5):
            setup.clock.at(doc["next_run_at"] + minutes(n) + dt.timedelta(seconds=1))
            barrier = threading.Barrier(2)
            threads = [threading.Thread(target=race, args=(s, barrier, outcomes))
                       for s in (setup.scheduler, other)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for run in setup.runs(doc["_id"]):
                setup.store.cancel_batch(run["_id"])
    finally:
        other_client.close()
    runs = setup.runs(doc["_id"])
    ticks = [run["schedule"]["tick"] for run in runs]
    assert ticks == [doc["next_run_at"] + minutes(n) for n in range(5)]
    assert outcomes.count("run") == 5  # the other scan of a tick: duplicate, or nothing due
    assert set(outcomes) <= {"run", "duplicate"}
    assert setup.schedule(doc["_id"])["counters"]["runs"] == 5
    # the loser's items were removed with its batch: only the winners' items exist
    assert setup.store.items.count_documents({}) == 5 * len(URLS)


def race(scheduler: Scheduler, barrier: threading.Barrier, outcomes: list[str]) -> None:
    barrier.wait()
    outcomes.extend(fired.outcome for fired in scheduler.scan())


def test_a_restart_between_batch_and_schedule_update_makes_no_second_batch(setup: Setup) -> None:
    doc = setup.create(cron="0 * * * *")
    tick = doc["next_run_at"]
    setup.clock.at(tick + dt.timedelta(seconds=1))
    # the process died after the tick's batch was stored, before the schedule moved on
    made = setup.scheduler.make_run(doc, "tick", tick, f"{doc['_id']}@{tick.isoformat()}")
    assert setup.schedule(doc["_id"])["next_run_at"] == tick
    assert setup.scan_at(tick + minutes(5)) == ["duplicate"]
    assert [run["_id"] for run in setup.runs(doc["_id"])] == [made["_id"]]
    stored = setup.schedule(doc["_id"])
    assert stored["next_run_at"] == tick + minutes(60)
    assert (stored["counters"]["runs"], stored["last_run"]["batch_id"]) == (1, made["_id"])


# -- catch-up --------------------------------------------------------------------------------


def test_catch_up_one_runs_once_for_every_tick_missed(setup: Setup) -> None:
    doc = setup.create(cron="0 * * * *")  # hourly; default catch_up "one"
    first = doc["next_run_at"]
    # the service was down for five ticks
    assert setup.scan_at(first + dt.timedelta(hours=4, minutes=30)) == ["run"]
    runs = setup.runs(doc["_id"])
    assert [run["schedule"]["tick"] for run in runs] == [first]
    stored = setup.schedule(doc["_id"])
    assert stored["counters"] == {"runs": 1, "skipped": 0, "missed": 4, "failed": 0}
    assert stored["next_run_at"] == first + dt.timedelta(hours=5)


def test_catch_up_none_drops_late_ticks_but_not_ones_found_in_time(setup: Setup) -> None:
    doc = setup.create(cron="0 * * * *", catch_up="none")
    first = doc["next_run_at"]
    assert setup.scan_at(first + dt.timedelta(hours=2, minutes=30)) == ["missed"]
    stored = setup.schedule(doc["_id"])
    assert setup.runs(doc["_id"]) == []
    assert (stored["counters"]["missed"], stored["next_run_at"]) == (
        3, first + dt.timedelta(hours=3))
    # within BATCH_SCHEDULE_MISFIRE_GRACE (60 s here): it runs
    assert setup.scan_at(stored["next_run_at"] + dt.timedelta(seconds=30)) == ["run"]


# -- overlap ---------------------------------------------------------------------------------


def test_overlap_skip_counts_the_tick_and_runs_again_once_the_run_ended(setup: Setup) -> None:
    doc = setup.create(cron="*/5 * * * *")
    first = doc["next_run_at"]
    assert setup.scan_at(first) == ["run"]
    running = setup.runs(doc["_id"])[0]["_id"]
    setup.store.mark_running(running)
    assert setup.scan_at(first + minutes(5)) == ["skipped"]
    stored = setup.schedule(doc["_id"])
    assert (stored["counters"]["skipped"], stored["last_skip"]["running"]) == (1, running)
    assert stored["next_run_at"] == first + minutes(10)
    setup.store.cancel_batch(running)
    assert setup.scan_at(first + minutes(10)) == ["run"]
    assert len(setup.runs(doc["_id"])) == 2


def test_overlap_queue_holds_the_tick_until_the_run_ends(setup: Setup) -> None:
    doc = setup.create(cron="*/5 * * * *", overlap="queue", catch_up="none")
    first = doc["next_run_at"]
    assert setup.scan_at(first) == ["run"]
    running = setup.runs(doc["_id"])[0]["_id"]
    setup.store.mark_running(running)
    second = first + minutes(5)
    # held past the misfire grace and past two more ticks: still one waiting run, not dropped
    for later in (0, 7, 13):
        assert setup.scan_at(second + minutes(later)) == ["waiting"]
    stored = setup.schedule(doc["_id"])
    assert (stored["held_tick"], stored["next_run_at"]) == (second, second)
    setup.store.cancel_batch(running)
    assert setup.scan_at(second + minutes(14)) == ["run"]
    runs = setup.runs(doc["_id"])
    assert [run["schedule"]["tick"] for run in runs] == [first, second]
    stored = setup.schedule(doc["_id"])
    assert "held_tick" not in stored
    assert stored["counters"] == {"runs": 2, "skipped": 0, "missed": 2, "failed": 0}
    assert stored["next_run_at"] == first + minutes(20)


# -- changes, manual runs, failures ----------------------------------------------------------


def test_pause_resume_and_a_new_cron_line_count_ticks_from_now(setup: Setup) -> None:
    doc = setup.create(cron="0 * * * *")
    paused, _ = setup.service.update(ALICE, doc["_id"], {"enabled": False})
    # it keeps the tick it waited for (the API shows no next run while paused)
    assert (paused["enabled"], paused["next_run_at"]) == (False, doc["next_run_at"])
    assert setup.scan_at(T0 + dt.timedelta(hours=3)) == []
    resumed, _ = setup.service.update(ALICE, doc["_id"], {"enabled": True})
    assert resumed["next_run_at"] == dt.datetime(2026, 6, 1, 16, 0, tzinfo=dt.UTC)
    changed, _ = setup.service.update(ALICE, doc["_id"], {"cron": "30 18 * * *",
                                                          "timezone": "Asia/Tokyo"})
    assert changed["next_run_at"] == dt.datetime(2026, 6, 2, 9, 30, tzinfo=dt.UTC)
    assert setup.runs(doc["_id"]) == []


def test_a_manual_run_makes_a_batch_whatever_the_ticks(setup: Setup) -> None:
    doc = setup.create(cron="0 3 * * *", enabled=False)
    batch = setup.service.run_now(ALICE, doc["_id"])
    assert batch["schedule"] == {"id": doc["_id"], "tick": None, "trigger": "manual"}
    assert "schedule_tick" not in batch
    stored = setup.schedule(doc["_id"])
    assert (stored["counters"]["runs"], stored["last_run"]["trigger"]) == (1, "manual")
    with pytest.raises(ForbiddenError):
        setup.service.run_now(BOB, doc["_id"])


def test_a_tick_whose_template_no_longer_makes_a_batch_is_counted_and_skipped(
    setup: Setup,
) -> None:
    source = setup.store.create_batch(parse_batch(URLS, FIELDS), owner="alice")
    doc = setup.create(cron="0 * * * *", batch={"rerun_of": source["_id"]})
    setup.store.batches.delete_one({"_id": source["_id"]})
    assert setup.scan_at(doc["next_run_at"]) == ["failed"]
    stored = setup.schedule(doc["_id"])
    assert (stored["counters"]["failed"], stored["last_error"]["code"]) == (1, "NOT_FOUND")
    assert stored["next_run_at"] == doc["next_run_at"] + dt.timedelta(hours=1)


def test_a_rerun_of_schedule_runs_the_source_batchs_inputs(setup: Setup) -> None:
    source = setup.store.create_batch(parse_batch(URLS, FIELDS), owner="alice")
    doc = setup.create(cron="0 * * * *", batch={"rerun_of": source["_id"]})
    assert setup.scan_at(doc["next_run_at"]) == ["run"]
    (run,) = setup.runs(doc["_id"])
    assert (run["rerun_of"], run["schema"], run["counters"]["total"]) == (
        source["_id"], source["schema"], 2)


# -- bad input -------------------------------------------------------------------------------


def stored_nothing(setup: Setup) -> None:
    db = setup.store.db
    assert (db["schedules"].count_documents({}), db["batches"].count_documents({}),
            db["items"].count_documents({})) == (0, 0, 0)


def test_every_problem_of_a_schedule_is_listed_and_nothing_is_stored(setup: Setup) -> None:
    body = {"cron": "61 * * * *", "timezone": "Mars/Olympus", "catch_up": "all",
            "overlap": "wait", "enabled": "yes",
            "batch": {"urls": ["ftp://x", "https://ok.example/"], "fields": FIELDS,
                      "options": {"concurrency": 0}}}
    with pytest.raises(InvalidScheduleError) as caught:
        setup.service.create(ALICE, body)
    error = caught.value
    assert (error.code, error.http_status) == ("INVALID_SCHEDULE", 422)
    by_field = {(d["field"], d["code"]) for d in error.details}
    assert {("cron", "INVALID_SCHEDULE"), ("timezone", "INVALID_SCHEDULE"),
            ("catch_up", "INVALID_SCHEDULE"), ("overlap", "INVALID_SCHEDULE"),
            ("enabled", "INVALID_SCHEDULE"), ("batch.urls", "INVALID_URL"),
            ("batch.options", "INVALID_OPTION")} <= by_field
    assert "unknown time zone 'Mars/Olympus'" in error.message
    stored_nothing(setup)


@pytest.mark.parametrize("cron", ["", "* * * *", "0 0 30 2 *", "*/5 * * * * *", "@daily", 7])
def test_a_bad_cron_line_is_refused(setup: Setup, cron: Any) -> None:
    with pytest.raises(InvalidScheduleError) as caught:
        setup.create(cron=cron)
    assert [d["field"] for d in caught.value.details] == ["cron"]
    stored_nothing(setup)


def test_rerun_of_an_unknown_batch_is_422_and_another_owners_is_403(setup: Setup) -> None:
    with pytest.raises(InvalidScheduleError) as caught:
        setup.create(cron="0 3 * * *", batch={"rerun_of": "b_" + "0" * 32})
    assert caught.value.details == [{"field": "batch.rerun_of", "code": "NOT_FOUND",
                                     "message": caught.value.details[0]["message"]}]
    stored_nothing(setup)
    bobs = setup.store.create_batch(parse_batch(URLS, FIELDS), owner="bob")
    with pytest.raises(ForbiddenError):
        setup.create(cron="0 3 * * *", batch={"rerun_of": bobs["_id"]})
    assert setup.store.db["schedules"].count_documents({}) == 0


def test_schedules_are_owner_scoped(setup: Setup) -> None:
    doc = setup.create(cron="0 3 * * *")
    for call in (setup.service.get, setup.service.delete):
        with pytest.raises(ForbiddenError):
            call(BOB, doc["_id"])
    with pytest.raises(ForbiddenError):
        setup.service.update(BOB, doc["_id"], {"enabled": False})
    assert setup.service.page(BOB, 1, 10) == ([], 0)
    assert [d["_id"] for d in setup.service.page(ALICE, 1, 10)[0]] == [doc["_id"]]


def test_a_generated_webhook_secret_is_kept_for_every_run(setup: Setup) -> None:
    doc, secret = setup.service.create(ALICE, {
        "cron": "0 * * * *", "batch": {"urls": URLS, "fields": FIELDS,
                                       "webhook_url": "https://hooks.example/in"}})
    assert secret is not None and secret.startswith("whsec_")
    assert doc["batch"]["webhook"] == {"url": "https://hooks.example/in", "secret": secret}
    assert "webhook_url" not in doc["batch"]
    assert setup.scan_at(doc["next_run_at"]) == ["run"]
    (run,) = setup.runs(doc["_id"])
    assert (run["webhook"]["url"], run["webhook"]["secret"]) == ("https://hooks.example/in",
                                                                  secret)
