"""Schedules in real Scrapyd processes on one MongoDB: ticks every few seconds (a seconds field,
BATCH_SCHEDULE_SECONDS_FIELD) fire real crawls of the example site; two API nodes and a restart
of the service still give exactly one batch per tick, and every tick is accounted for (a run, a
skip or a miss). Bad input over HTTP and the CLI store nothing.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from batchscraper.demo.site import ExampleSite
from batchscraper.schedules.timing import Timing, parse_timezone
from batchscraper.store.mongo import connect
from tests.api_fixtures import (  # noqa: F401  (fixtures)
    KEYS,
    REPO,
    ScrapydServer,
    assert_error,
    assert_matches,
    openapi_fixture,
    scrapyd_fixture,
    start_scrapyd,
    wait_for,
)

pytestmark = pytest.mark.slow

FIELDS = [{"field": "name", "type": "string", "required": True},
          {"field": "price", "type": "number"}]
# ticks every few seconds; a run interrupted by the shutdown is resumed within seconds; a tick
# found more than 1.5 s late counts as late (what catch_up is about)
QUICK = {"batch_schedule_seconds_field": "true", "batch_schedule_interval": "0.3",
         "batch_reconcile_interval": "0.5", "batch_reconcile_grace": "1",
         "batch_schedule_misfire_grace": "1.5"}
# two nodes scanning this often both find most ticks due before either has moved it on: a race
RACING = {**QUICK, "batch_schedule_interval": "0.05"}
FINAL = ("completed", "partial", "failed", "cancelled")


def own_database(mongo_uri: str) -> str:
    """A database of the test's own: the scheduler fires every schedule stored in its database."""
    return mongo_uri.replace("/batchscraper_tests?", f"/sched_{uuid.uuid4().hex[:10]}?")


def runs_of(node: ScrapydServer, schedule_id: str) -> list[dict[str, Any]]:
    answer = node.call("GET", f"/schedules/{schedule_id}/runs?limit=50")
    assert answer.status == 200, answer.body
    return list(answer.json()["runs"])


def test_ticks_fire_once_each_across_two_nodes_and_a_restart(
    mongo_uri: str, tmp_path: Path, site: ExampleSite
) -> None:
    uri = own_database(mongo_uri)
    node_a = start_scrapyd(tmp_path / "a", uri, api_settings=RACING)
    node_b = start_scrapyd(tmp_path / "b", uri, api_settings=RACING)
    try:
        # queue: a catch-up tick that finds a run the shutdown interrupted waits for it (resumed
        # by the reconciler) instead of being skipped
        body = {"name": "prices", "cron": "*/4 * * * * *", "overlap": "queue",
                "batch": {"urls": [site.url(f"/products/{n}") for n in (1, 2)],
                          "fields": FIELDS, "options": {"retries": 0}}}
        created = node_a.call("POST", "/schedules", body)
        assert created.status == 201, created.body
        schedule_id = created.json()["schedule_id"]
        assert created.headers["Location"] == f"/schedules/{schedule_id}"
        wait_for(lambda: len(runs_of(node_a, schedule_id)) >= 3 and
                 all_final(node_a, schedule_id), timeout=90, what="3 runs, ended")

        # the service goes down (both nodes) between two ticks, for several; one node comes back
        node_a.stop()
        node_b.stop()
        before = {run["batch_id"]: run["tick"] for run in runs_of_db(uri, schedule_id)}
        time.sleep(9)
        up_at = dt.datetime.now(dt.UTC)
        node_a = start_scrapyd(tmp_path / "a", uri, api_settings=RACING)
        wait_for(lambda: len(runs_of(node_a, schedule_id)) >= len(before) + 2, timeout=60,
                 what="the catch-up run and a tick after it")
        paused = node_a.call("PATCH", f"/schedules/{schedule_id}", {"enabled": False}).json()
        assert (paused["enabled"], paused["next_run_at"]) == (False, None)
        runs = wait_for(lambda: all_final(node_a, schedule_id), timeout=90, what="runs to end")
    finally:
        node_a.stop()
        node_b.stop()

    # catch_up one: one run, once for all the ticks missed, of a tick missed while down (or
    # of the tick a run busy at the shutdown held back: overlap queue)
    stored = stored_schedule(uri, schedule_id)
    timing = Timing(stored["cron"], parse_timezone(stored["timezone"]))
    later = sorted(dt.datetime.fromisoformat(run["schedule"]["tick"]) for run in runs
                   if run["batch_id"] not in before)
    first_missed = timing.next_after(max(before.values()).replace(tzinfo=dt.UTC))
    caught_up = [tick for tick in later if tick < up_at]
    assert len(caught_up) == 1 and first_missed <= caught_up[0], (later, first_missed, up_at)
    ticks = [run["schedule"]["tick"] for run in runs]
    assert len(ticks) == len(set(ticks)), "a tick made two batches"
    assert {run["status"] for run in runs} == {"completed"}
    assert stored_schedule(uri, schedule_id)["counters"]["missed"] >= 1  # while down
    # the others: a skip (the previous run still busy) or a miss (folded into the catch-up run)
    assert_every_tick_counted(uri, schedule_id, runs)


def test_overlap_skip_and_catch_up_none_across_a_restart(
    mongo_uri: str, tmp_path: Path, site: ExampleSite
) -> None:
    """``overlap: skip``: a run slower than the ticks is never joined by another, the ticks
    meanwhile are skipped. ``catch_up: none``: ticks missed while the service was down are
    dropped, not run when it comes back. Every tick is a run, a skip or a miss."""
    uri = own_database(mongo_uri)
    node = start_scrapyd(tmp_path / "node", uri, api_settings=QUICK)
    try:
        slow = {"name": "slow", "cron": "*/2 * * * * *",  # a run takes longer than 2 s
                "batch": {"urls": [site.url("/slow?delay=4")], "fields": FIELDS,
                          "options": {"retries": 0}}}
        # queue: a tick that finds a run the shutdown interrupted waits for it (not skipped),
        # so only catch_up keeps a tick missed while down from running
        quick = {"name": "quick", "cron": "*/5 * * * * *", "catch_up": "none", "overlap": "queue",
                 "batch": {"urls": [site.url("/products/5")], "fields": FIELDS,
                           "options": {"retries": 0}}}
        slow_id, quick_id = (node.call("POST", "/schedules", body).json()["schedule_id"]
                             for body in (slow, quick))
        wait_for(lambda: len(runs_of(node, slow_id)) >= 2, timeout=90, what="2 slow runs")
        # the service goes down just after a quick run ended, for more than one of its ticks
        wait_for(lambda: [r for r in runs_of(node, quick_id) if r["status"] in FINAL],
                 timeout=60, what="a quick run to end")
        node.stop()
        down_at = dt.datetime.now(dt.UTC)
        quick_before = len(runs_of_db(uri, quick_id))
        time.sleep(8)
        up_at = dt.datetime.now(dt.UTC)
        node = start_scrapyd(tmp_path / "node", uri, api_settings=QUICK)
        wait_for(lambda: len(runs_of(node, quick_id)) > quick_before, timeout=60,
                 what="a quick run after the restart")
        for schedule_id in (slow_id, quick_id):
            node.call("PATCH", f"/schedules/{schedule_id}", {"enabled": False})
        slow_runs = wait_for(lambda: all_final(node, slow_id), timeout=120, what="slow runs")
        quick_runs = wait_for(lambda: all_final(node, quick_id), timeout=60, what="quick runs")
    finally:
        node.stop()

    # skip: each slow run began after the one before had ended; the ticks meanwhile skipped
    spans = sorted((dt.datetime.fromisoformat(run["created_at"]),
                    dt.datetime.fromisoformat(run["finished_at"])) for run in slow_runs)
    for before, after in itertools.pairwise(spans):
        assert after[0] >= before[1], spans
    assert stored_schedule(uri, slow_id)["counters"]["skipped"] >= 2
    # none: no run for a tick while the service was down; those ticks count as missed
    ticks = sorted(dt.datetime.fromisoformat(run["schedule"]["tick"]) for run in quick_runs)
    assert not [tick for tick in ticks if down_at < tick < up_at], ticks
    assert stored_schedule(uri, quick_id)["counters"]["missed"] >= 1
    for schedule_id, runs in ((slow_id, slow_runs), (quick_id, quick_runs)):
        assert {run["status"] for run in runs} == {"completed"}
        assert_every_tick_counted(uri, schedule_id, runs)


def assert_every_tick_counted(uri: str, schedule_id: str, runs: list[dict[str, Any]]) -> None:
    """From the first run's tick to the one the paused schedule waits for, every tick is a run,
    a skip or a miss, once."""
    stored = stored_schedule(uri, schedule_id)
    counters = stored["counters"]
    assert counters["runs"] == len(runs)
    first_tick = min(dt.datetime.fromisoformat(run["schedule"]["tick"]) for run in runs)
    timing = Timing(stored["cron"], parse_timezone(stored["timezone"]))
    ticks_between = 1 + timing.count_between(
        first_tick, stored["next_run_at"] - dt.timedelta(seconds=1))
    assert counters["runs"] + counters["skipped"] + counters["missed"] == ticks_between, counters


def runs_of_db(uri: str, schedule_id: str) -> list[dict[str, Any]]:
    client = connect(uri)
    try:
        db = client.get_default_database()
        return [{"batch_id": b["_id"], "tick": b["schedule"]["tick"]}
                for b in db["batches"].find({"schedule.id": schedule_id})]
    finally:
        client.close()


def all_final(node: ScrapydServer, schedule_id: str) -> list[dict[str, Any]] | None:
    runs = runs_of(node, schedule_id)
    return runs if all(run["status"] in FINAL for run in runs) else None


def stored_schedule(uri: str, schedule_id: str) -> dict[str, Any]:
    client = connect(uri)
    try:
        return dict(client.get_default_database()["schedules"].find_one({"_id": schedule_id}))
    finally:
        client.close()


def test_schedule_endpoints_and_cli_over_http(
    scrapyd: ScrapydServer, openapi: dict, site: ExampleSite, mongo_uri: str
) -> None:
    client = connect(mongo_uri)
    schedules = client.get_default_database()["schedules"]
    try:
        body = {"name": "nightly prices", "cron": "0 3 * * *", "timezone": "Europe/Berlin",
                "batch": {"urls": [site.url("/products/3")], "fields": FIELDS,
                          "webhook": {"url": "http://127.0.0.1:9/hook"}}}
        created = scrapyd.call("POST", "/schedules", body)
        assert created.status == 201, created.body
        doc = created.json()
        assert_matches(openapi, "Schedule", doc)
        schedule_id = doc["schedule_id"]
        assert doc["batch"]["webhook"]["secret"].startswith("whsec_")  # generated: shown once
        assert doc["next_run_at"].endswith("+00:00") and doc["last_run"] is None
        shown = scrapyd.call("GET", f"/schedules/{schedule_id}").json()
        assert_matches(openapi, "Schedule", shown)
        assert shown["batch"]["webhook"] == {"url": "http://127.0.0.1:9/hook"}  # no secret

        ran = scrapyd.call("POST", f"/schedules/{schedule_id}/run")
        assert ran.status == 202, ran.body
        assert_matches(openapi, "ScheduleRunAccepted", ran.json())
        batch_id = ran.json()["batch_id"]
        assert ran.json()["schedule"] == {"id": schedule_id, "tick": None, "trigger": "manual"}
        final = scrapyd.client().wait(batch_id, interval=0.3, timeout=90)
        assert (final["status"], final["name"]) == ("completed", "nightly prices")
        runs = scrapyd.call("GET", f"/schedules/{schedule_id}/runs").json()
        assert_matches(openapi, "ScheduleRuns", runs)
        assert [run["batch_id"] for run in runs["runs"]] == [batch_id]
        shown = scrapyd.call("GET", f"/schedules/{schedule_id}").json()
        assert (shown["last_run"]["batch_id"], shown["last_run"]["status"]) == (batch_id,
                                                                                "completed")

        # the CLI, as a user runs it
        cli = cli_runner(scrapyd)
        listed = cli("schedule", "list")
        assert listed.returncode == 0 and schedule_id in listed.stdout
        assert "'0 3 * * *' Europe/Berlin" in listed.stdout
        paused = cli("schedule", "pause", schedule_id)
        assert paused.returncode == 0 and "paused" in paused.stdout
        assert scrapyd.call("GET", f"/schedules/{schedule_id}").json()["next_run_at"] is None
        assert cli("schedule", "resume", schedule_id).returncode == 0
        assert scrapyd.call("GET", f"/schedules/{schedule_id}").json()["enabled"] is True
        added = cli("schedule", "add", "--cron", "30 4 * * 1", "--from", batch_id,
                    "--name", "weekly")
        assert added.returncode == 0, added.stderr
        second = json.loads(added.stdout)["schedule_id"]
        assert scrapyd.call("GET", f"/schedules/{second}", owner="bob").status == 403
        before = schedules.count_documents({})
        refused = cli("schedule", "add", "--cron", "61 * * * *", "--timezone", "Mars/Olympus",
                      "--from", batch_id)
        assert refused.returncode == 2
        assert refused.stderr.count("\n") == 1, refused.stderr  # one readable line
        assert "INVALID_SCHEDULE" in refused.stderr and "Mars/Olympus" in refused.stderr
        assert schedules.count_documents({}) == before
        assert cli("schedule", "rm", second).returncode == 0

        deleted = scrapyd.call("DELETE", f"/schedules/{schedule_id}")
        assert_matches(openapi, "ScheduleDeleted", deleted.json())
        assert_error(openapi, scrapyd.call("GET", f"/schedules/{schedule_id}"), 404, "NOT_FOUND")
        # its batches stay
        assert scrapyd.call("GET", f"/batches/{batch_id}?limit=0").status == 200
    finally:
        client.close()


def test_bad_schedules_are_refused_over_http_and_nothing_is_stored(
    scrapyd: ScrapydServer, openapi: dict, site: ExampleSite, mongo_uri: str
) -> None:
    client = connect(mongo_uri)
    db = client.get_default_database()
    counts = lambda: (db["schedules"].count_documents({}),  # noqa: E731
                      db["batches"].count_documents({}))
    try:
        before = counts()
        bad = {"cron": "0 25 * * *", "timezone": "Nowhere/Atlantis", "overlap": "both",
               "batch": {"urls": ["not a url"], "fields": FIELDS,
                         "options": {"concurrency": 1000}}}
        error = assert_error(openapi, scrapyd.call("POST", "/schedules", bad), 422,
                             "INVALID_SCHEDULE")
        assert {d["field"] for d in error["details"]} == {
            "cron", "timezone", "overlap", "batch.urls", "batch.options"}
        unknown = {"cron": "0 3 * * *", "batch": {"rerun_of": "b_" + "f" * 32}}
        error = assert_error(openapi, scrapyd.call("POST", "/schedules", unknown), 422,
                             "INVALID_SCHEDULE")
        assert [(d["field"], d["code"]) for d in error["details"]] == [
            ("batch.rerun_of", "NOT_FOUND")]
        assert counts() == before
        bobs = scrapyd.call("POST", "/batches", {"urls": [site.url("/products/4")],
                                                 "fields": FIELDS}, owner="bob").json()
        before = counts()
        theirs = {"cron": "0 3 * * *", "batch": {"rerun_of": bobs["batch_id"]}}
        assert_error(openapi, scrapyd.call("POST", "/schedules", theirs), 403, "FORBIDDEN")
        assert_error(openapi, scrapyd.call("POST", "/schedules", {"cron": "0 3 * * *",
                                                                  "every": 5}),
                     400, "INVALID_INPUT")
        assert_error(openapi, scrapyd.call("GET", "/schedules/s_nope"), 404, "NOT_FOUND")
        assert_error(openapi, scrapyd.call("POST", "/schedules", {"cron": "* * * * *",
                                                                  "batch": {}}, owner=None),
                     401, "UNAUTHORIZED")
        assert counts() == before
    finally:
        client.close()


def cli_runner(scrapyd: ScrapydServer) -> Any:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "batchscraper.cli", *args, "--url", scrapyd.url,
                   "--api-key", KEYS["alice"]]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60,
                              check=False)

    return run
