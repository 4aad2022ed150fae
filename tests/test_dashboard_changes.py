"""The dashboard's Changes and Monitors panels in real Chromium against a real Scrapyd: a batch
compared with an earlier one shows its change counts and changed items (old -> new), and its
failed monitor in red.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from batchscraper.demo.site import ExampleSite
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


def test_changes_and_monitors_panels(ui: Watched, scrapyd: ScrapydServer,
                                     site: ExampleSite) -> None:
    options = {"retries": 0, "render_js": "never"}
    first = submit(scrapyd, {"urls": [site.url(f"/products/{n}") for n in (1, 2)],
                             "fields": FIELDS, "options": options})
    wait_final(scrapyd, first)
    second = submit(scrapyd, {"urls": [site.url(f"/products/{n}") for n in (1, 2, 3)],
                              "fields": FIELDS, "options": options, "compare_to": first,
                              "monitors": {"min_records": 5, "min_completed_ratio": 1}})
    wait_final(scrapyd, second)

    page = ui.page
    open_ui(ui, scrapyd, f"/batches/{second}")
    expect(badge(page)).to_have_text("completed", timeout=BATCH_WAIT_MS)
    counts = page.locator("#change-counts dd")
    expect(page.locator("#change-counts dd[data-change=unchanged]")).to_have_text("2")
    expect(page.locator("#change-counts dd[data-change=new]")).to_have_text("1")
    expect(counts).to_have_count(6)
    expect(page.locator("#changes-table tbody tr")).to_have_count(1)
    expect(page.locator("#changes-table tbody tr td").nth(1)).to_have_text("new")
    expect(page.locator("#monitors h2")).to_have_text("Monitors: 1 failed")
    failed = page.locator("#monitors tr.monitor-failed")
    expect(failed).to_have_count(1)
    expect(failed.locator("td").first).to_have_text("min_records")
    expect(failed.locator("td").last).to_have_css("color", "rgb(198, 47, 47)")  # --bad
    shot(page, "batch-changes-monitors")
