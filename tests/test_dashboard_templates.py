"""The dashboard's Templates panel in real Chromium against a real Scrapyd whose crawl learned a
template of the template shop from the fake LLM: the batch page shows the template it used,
its pages, misses and hit rate in this batch, and a template deleted since as deleted.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from batchscraper.demo.shop import TemplateShop
from tests.api_fixtures import ScrapydServer
from tests.fakellm import FakeLLM, fake_llm_fixture, fake_llm_server_fixture  # noqa: F401
from tests.test_dashboard import (  # noqa: F401  (fixtures)
    BATCH_WAIT_MS,
    Watched,
    badge,
    browser,
    open_ui,
    shot,
    ui,
)
from tests.test_templates_api import (  # noqa: F401  (fixtures)
    crawl_shop,
    host_of,
    learning_scrapyd_fixture,
    shop_fixture,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_batch_page_shows_its_templates_and_hit_rate(
    ui: Watched,  # noqa: F811  (the fixture imported above)
    scrapyd: ScrapydServer, shop: TemplateShop, fake_llm: FakeLLM,
) -> None:
    fake_llm.labelled = True
    state = crawl_shop(scrapyd, shop, range(1, 21))
    [(template_id, used)] = state["templates"].items()
    assert used["pages"] > 0 and not used.get("misses")

    page = ui.page
    open_ui(ui, scrapyd, f"/batches/{state['batch_id']}")
    expect(badge(page)).to_have_text("completed", timeout=BATCH_WAIT_MS)
    row = page.locator(f"#templates-table tbody tr[data-template='{template_id}']")
    expect(page.locator("#templates-table tbody tr")).to_have_count(1)
    expect(row.locator("td")).to_have_text([
        template_id, host_of(shop), "v1", "active", str(used["pages"]), "0", "100%",
        f"{used['audits']} of {used['audits']}" if used.get("audits") else "\u2013",
        "colour, material, rating"])
    expect(page.locator("#templates-summary")).to_contain_text(
        f"{used['pages']} pages extracted by learned templates")
    shot(page, "batch-templates")

    assert scrapyd.call("DELETE", f"/templates/{template_id}").status == 200
    page.reload()
    expect(row.locator("td").nth(3)).to_have_text("deleted")
    expect(row).to_have_class("template-deleted")
    expect(row.locator("td").nth(4)).to_have_text(str(used["pages"]))  # the batch's own count
