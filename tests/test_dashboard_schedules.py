"""The dashboard's Schedules page in real Chromium against a real Scrapyd.

A schedule is made from a batch's page ("Schedule this batch"): a bad cron line and an unknown
time zone show the API's problems under their fields and store nothing. The Schedules page lists
it with its next run on the schedule's own wall clock; pause and resume change its stored
``enabled``; "Run now" makes batches that show as its last run and in its runs (with their change
counts, failed monitor in red, and a link to the batch's Changes panel); delete removes it and
leaves its batches.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Locator, Page, expect

from batchscraper.demo.site import ExampleSite
from batchscraper.store import BatchStore
from tests.api_fixtures import ScrapydServer, scrapyd_fixture  # noqa: F401  (fixtures)
from tests.test_dashboard import (  # noqa: F401  (fixtures)
    BATCH_WAIT_MS,
    FIELDS,
    Watched,
    badge,
    browser,
    open_ui,
    shot,
    submit,
    ui,
    wait_final,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ZONE = "Europe/Berlin"
CHANGE_COLUMNS = ("changed", "new", "gone", "unchanged")
BAD_RED = "rgb(198, 47, 47)"  # --bad


def wall_clock(moment: dt.datetime | str, zone: str) -> str:
    """A stored or API time as the schedule's zone shows it (the page's format)."""
    when = dt.datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    if when.tzinfo is None:  # MongoDB keeps UTC
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


def schedule_row(page: Page, schedule_id: str) -> Locator:
    return page.locator(f"#schedules tbody tr[data-schedule-id='{schedule_id}']")


def cell(row: Locator, name: str) -> Locator:
    return row.locator(f"[data-cell='{name}']")


def create_from_batch(page: Page, scrapyd: ScrapydServer, store: BatchStore,
                      source: str) -> str:
    """Schedule the batch through its page: first with bad input (refused, nothing stored),
    then with a good cron line and zone; the new schedule's id."""
    schedules = store.db["schedules"]
    mine = {"owner": "alice", "batch.rerun_of": source}
    page.click("#schedule-batch")
    expect(page.locator("#schedule-form")).to_be_visible()
    expect(page.locator("#schedule-name")).to_have_value("shoes")  # the batch's name
    page.fill("#schedule-name", "nightly shoes")
    page.fill("#schedule-cron", "0 25 * * *")
    page.fill("#schedule-timezone", "Mars/Olympus")
    page.click("#create-schedule")

    # what the API says about the same body, each problem under its field
    bad = {"name": "nightly shoes", "cron": "0 25 * * *", "timezone": "Mars/Olympus",
           "batch": {"rerun_of": source, "monitors": {"min_records": 5}}}
    refused = scrapyd.call("POST", "/schedules", bad)
    assert refused.status == 422, refused.body
    problems = {p["field"]: f"{p['message']} ({p['code']})"
                for p in refused.json()["error"]["details"]}
    assert set(problems) == {"cron", "timezone"}
    expect(page.locator("#error-schedule-cron")).to_have_text(problems["cron"])
    expect(page.locator("#error-schedule-timezone")).to_have_text(problems["timezone"])
    expect(page.locator("#schedule-cron")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#error-schedule-name")).to_be_hidden()
    expect(page).to_have_url(re.compile(f"#/batches/{source}"))  # still on the batch
    assert schedules.count_documents(mine) == 0
    shot(page, "schedule-form-error")

    # 03:00 on 29 February: a real tick never comes while the test runs (the runs are its own)
    page.fill("#schedule-cron", "0 3 29 2 *")
    page.fill("#schedule-timezone", ZONE)
    page.click("#create-schedule")
    expect(page).to_have_url(re.compile(r"#/schedules/s_[0-9a-f]{32}$"))
    schedule_id = page.url.rsplit("/", 1)[1]
    [doc] = schedules.find(mine)
    assert doc["_id"] == schedule_id
    assert (doc["name"], doc["cron"], doc["timezone"], doc["enabled"]) == (
        "nightly shoes", "0 3 29 2 *", ZONE, True)
    assert doc["batch"] == {"rerun_of": source, "monitors": {"min_records": 5}}
    return schedule_id


def run_now(page: Page, scrapyd: ScrapydServer, row: Locator, before: str | None) -> str:
    """Click "Run now"; the batch it made (the row's last run), once it ended."""
    row.locator("button[data-action=run]").click()
    last = row.locator(".last-run")
    if before is not None:
        expect(last).not_to_have_attribute("data-batch-id", before)
    expect(last).to_have_attribute("data-batch-id", re.compile(r"^b_[0-9a-f]{32}$"))
    batch_id = str(last.get_attribute("data-batch-id"))
    expect(page.locator("#notice")).to_contain_text(f"run {batch_id} started")
    wait_final(scrapyd, batch_id)
    return batch_id


def expect_run_outcome(row: Locator, run: dict[str, Any]) -> None:
    """The row shows the run's change counts and monitor results as the API gives them."""
    for status in CHANGE_COLUMNS:
        expect(row.locator(f"[data-change='{status}']")).to_have_text(
            f"{run['changes'][status]} {status}")
    failed = [result for result in run["monitors"] if not result["ok"]]
    monitors = row.locator("[data-cell='monitors'] .monitors")
    expect(monitors).to_have_attribute("data-failed", str(len(failed)))
    expect(monitors.locator(".monitors-failed")).to_have_text(f"{len(failed)} failed")
    expect(monitors.locator(".monitors-failed")).to_have_css("color", BAD_RED)


def test_schedule_from_a_batch_listed_paused_resumed_run_and_deleted(
    ui: Watched,  # noqa: F811  (the fixture imported above)
    scrapyd: ScrapydServer, site: ExampleSite, store: BatchStore,
) -> None:
    schedules = store.db["schedules"]
    source = submit(scrapyd, {"urls": [site.url(f"/products/{n}") for n in (1, 2)],
                              "fields": FIELDS, "name": "shoes",
                              "options": {"retries": 0, "render_js": "never"},
                              "monitors": {"min_records": 5}})
    wait_final(scrapyd, source)
    page = ui.page
    open_ui(ui, scrapyd, f"/batches/{source}")
    expect(badge(page)).to_have_text("completed", timeout=BATCH_WAIT_MS)
    schedule_id = create_from_batch(page, scrapyd, store, source)

    # its page: the next run at 03:00 in its zone, as stored
    stored = schedules.find_one({"_id": schedule_id})
    next_run = wall_clock(stored["next_run_at"], ZONE)
    assert next_run.endswith(" 03:00")
    expect(page.locator("#schedule-settings .next-run .when")).to_have_text(next_run)
    expect(page.locator("#runs tbody td.empty")).to_have_text("No runs yet.")

    # the Schedules page lists it
    page.click("a[data-nav=schedules]")
    row = schedule_row(page, schedule_id)
    expect(row).to_have_count(1)
    expect(row.locator(".batch-name")).to_have_text("nightly shoes")
    expect(cell(row, "timing")).to_have_text(f"0 3 29 2 * {ZONE}")
    expect(cell(row, "state")).to_have_text("enabled")
    expect(cell(row, "next").locator(".when")).to_have_text(next_run)
    expect(cell(row, "last")).to_have_text("not run yet")

    # pause, then resume: the stored schedule follows
    row.locator("button[data-action=pause]").click()
    expect(cell(row, "state")).to_have_text("paused")
    expect(cell(row, "next")).to_have_text("paused")
    assert schedules.find_one({"_id": schedule_id})["enabled"] is False
    row.locator("button[data-action=resume]").click()
    expect(cell(row, "state")).to_have_text("enabled")
    resumed = schedules.find_one({"_id": schedule_id})
    assert resumed["enabled"] is True
    expect(cell(row, "next").locator(".when")).to_have_text(
        wall_clock(resumed["next_run_at"], ZONE))

    # run now, twice: the second run compares with the first
    first = run_now(page, scrapyd, row, None)
    second = run_now(page, scrapyd, row, first)
    for batch_id in (first, second):
        assert store.batches.find_one({"_id": batch_id})["schedule"]["id"] == schedule_id
    shown = scrapyd.call("GET", f"/schedules/{schedule_id}").json()
    assert shown["last_run"]["batch_id"] == second
    assert shown["last_run"]["changes"]["unchanged"] == 2  # the site did not change
    expect(cell(row, "last").locator(".badge")).to_have_text(shown["last_run"]["status"])
    runs_made = shown["counters"]["runs"]
    expect(cell(row, "runs")).to_have_text(f"{runs_made} run{'' if runs_made == 1 else 's'}")
    expect_run_outcome(row, shown["last_run"])
    shot(page, "schedules")

    # its runs, newest first, each linking to its batch; the compared one to its Changes
    row.locator(f"a[href='#/schedules/{schedule_id}']").click()
    runs = scrapyd.call("GET", f"/schedules/{schedule_id}/runs").json()
    assert [run["batch_id"] for run in runs["runs"]] == [second, first]
    run_rows = page.locator("#runs tbody tr")
    expect(run_rows).to_have_count(runs["pagination"]["total"])
    for run_row, run in zip([run_rows.nth(0), run_rows.nth(1)], runs["runs"], strict=True):
        expect(run_row).to_have_attribute("data-batch-id", run["batch_id"])
        expect(run_row.locator(f"a[href='#/batches/{run['batch_id']}']")).to_have_count(1)
        expect(cell(run_row, "trigger")).to_have_text("run now")
        expect(cell(run_row, "status")).to_have_text(run["status"])
    expect_run_outcome(run_rows.nth(0), runs["runs"][0])
    expect(run_rows.nth(1).locator(".changes-link")).to_have_count(0)  # compared with none
    shot(page, "schedule-runs")
    run_rows.nth(0).locator(".changes-link").click()
    expect(page).to_have_url(re.compile(f"#/batches/{second}"))
    expect(page.locator("#changes")).to_be_visible()
    expect(page.locator("#changes h2 a")).to_have_text(first)
    expect(page.locator("#changes #change-counts dd[data-change=unchanged]")).to_have_text(
        str(runs["runs"][0]["changes"]["unchanged"]))
    expect(page.locator(f".made-by-schedule a[href='#/schedules/{schedule_id}']")).to_have_count(1)

    # delete: gone from the list and the store; its batches stay
    page.click("a[data-nav=schedules]")
    expect(row).to_have_count(1)
    row.locator("button[data-action=delete]").click()
    expect(page.locator("#confirm-dialog")).to_be_visible()
    page.click("#confirm-yes")
    expect(row).to_have_count(0)
    expect(page.locator("#notice")).to_contain_text("deleted")
    assert schedules.find_one({"_id": schedule_id}) is None
    assert store.batches.count_documents({"_id": {"$in": [source, first, second]}}) == 3
