"""The web dashboard at /ui/ in real Chromium (Playwright) against a real Scrapyd.

The session's Scrapyd (API keys and basic auth on) crawls the local example
site; the browser only talks to the batch API, with the key typed into the
prompt. Screenshots of each page land in ``artifacts/``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from batchscraper.demo.site import ExampleSite, product_expected
from batchscraper.extraction.shaping import clean_text
from batchscraper.inputs import parse_batch
from batchscraper.inputs.profiles import profile_names
from batchscraper.render import CHROMIUM_ARGS, chromium_executable
from batchscraper.store import BatchStore
from tests.api_fixtures import (  # noqa: F401  (fixtures)
    KEYS,
    REPO,
    Receiver,
    ScrapydServer,
    free_port,
    receiver_fixture,
    scrapyd_fixture,
    wait_for,
)
from tests.conftest import assert_counters_match_items

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = REPO / "artifacts"
FIELDS = [
    {"field": "name", "type": "string", "required": True},
    {"field": "sku", "type": "string"},
    {"field": "price", "type": "number"},
]
FINAL = ("completed", "partial", "failed", "cancelled")
BATCH_WAIT_MS = 90_000
# the extractor replaces well-formed tags by a space; what it leaves is still markup
XSS_NAME = '<script<x>>window.__xss = 1</script<x>><img src=x onerror="window.__xss = 2"<x>>'
XSS_SKU = '" onerror=alert(document.domain) x="'
XSS_DOMAIN = '<img src=x onerror="window.__xss = 6"><b>bold</b>'
XSS_BODY = ('<h1>x</h1><script>window.__xss = 3</script><img src="x" onerror="window.__xss = 4">'
            "<p>&lt;script&gt;window.__xss = 5&lt;/script&gt;</p>")

expect.set_options(timeout=15_000)


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=chromium_executable(None), args=list(CHROMIUM_ARGS), headless=True
        )
        yield chromium
        chromium.close()


class Watched:
    """A page plus what it must never do: JS dialogs, uncaught errors."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()


@pytest.fixture()
def ui(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
    watched = Watched(context.new_page())
    yield watched
    context.close()
    assert watched.errors == [], "uncaught errors in the dashboard"
    assert watched.dialogs == [], "a JavaScript dialog fired"


@pytest.fixture(scope="module")
def other_site() -> Iterator[ExampleSite]:
    """A second example site on 127.0.0.2: its own domain (download slot) for the breaker."""
    with ExampleSite(host="127.0.0.2") as running:
        yield running


@pytest.fixture(scope="module")
def xss_site() -> Iterator[str]:
    """A page whose structured data carries script and event-handler payloads."""
    data = {"@context": "https://schema.org", "@type": "Product", "name": XSS_NAME,
            "sku": XSS_SKU, "offers": {"@type": "Offer", "price": "1.00"}}
    ld = json.dumps(data).replace("<", "\\u003c")  # keep </script> out of the page's own markup
    page = (f'<!doctype html><html><head><title>x</title><script type="application/ld+json">'
            f"{ld}</script></head><body>{XSS_BODY}</body></html>").encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# -- helpers ----------------------------------------------------------------------------


def submit(scrapyd: ScrapydServer, body: dict[str, Any], owner: str = "alice") -> str:
    answer = scrapyd.call("POST", "/batches", body, owner=owner)
    assert answer.status == 202, answer.body[:2000]
    return str(answer.json()["batch_id"])


def wait_final(scrapyd: ScrapydServer, batch_id: str, owner: str = "alice") -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        batch = scrapyd.call("GET", f"/batches/{batch_id}?limit=1", owner=owner).json()
        return batch if batch["status"] in FINAL else None

    return dict(wait_for(final, timeout=90, what=f"batch {batch_id} to finish"))


def open_ui(ui: Watched, scrapyd: ScrapydServer, route: str = "/", owner: str = "alice") -> None:
    """Load the dashboard at ``route`` and answer the key prompt the first 401 opens."""
    response = ui.page.goto(f"{scrapyd.url}/ui/#{route}")
    assert response is not None and response.status == 200
    enter_key(ui.page, KEYS[owner])


def enter_key(page: Page, key: str) -> None:
    expect(page.locator("#key-dialog")).to_be_visible()
    page.fill("#key-input", key)
    page.click("#key-dialog button[type=submit]")
    expect(page.locator("#key-dialog")).to_be_hidden()


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def badge(page: Page) -> Any:
    return page.locator("h1 + span .badge")


def row(page: Page, index: int) -> Any:
    return page.locator(f"#items tbody tr[data-index='{index}']")


def failures_of(scrapyd: ScrapydServer, batch_id: str) -> dict[str, int]:
    """The API's failed items per error code, most first (the order of the dashboard's table)."""
    failures = scrapyd.call("GET", f"/batches/{batch_id}?limit=1").json()["failures"]
    return dict(sorted(failures.items(), key=lambda entry: (-entry[1], entry[0])))


def example_of(scrapyd: ScrapydServer, batch_id: str, code: str) -> str:
    """The message of the batch's first failed item with ``code``."""
    answer = scrapyd.call("GET", f"/batches/{batch_id}/items?status=failed&error_code={code}"
                                 "&limit=1").json()
    return str(answer["items"][0]["error"]["message"])


def expect_codes_table(page: Page, scrapyd: ScrapydServer, batch_id: str,
                       failures: dict[str, int]) -> None:
    """The "Why items failed" table and the error-code filter show ``failures`` (the API's)."""
    assert failures == failures_of(scrapyd, batch_id)
    rows = page.locator("#error-codes tbody tr")
    expect(rows.locator("td:first-child")).to_have_text(list(failures))
    expect(rows.locator("td:nth-child(2)")).to_have_text([str(n) for n in failures.values()])
    expect(rows.locator("td:nth-child(3)")).to_have_text(
        [example_of(scrapyd, batch_id, code) for code in failures]
    )
    expect(page.locator("#item-code-filter option")).to_have_text(["any", *sorted(failures)])


def fail_items(store: BatchStore, batch_id: str, indexes: range, code: str) -> None:
    """Lease the items and write them back failed with ``code`` (as a worker would)."""
    claimed = store.claim(batch_id, "test-worker", indexes, 600)
    assert len(claimed) == len(indexes)
    for first in range(0, len(claimed), 200):
        records = [{"batch_id": batch_id, "index": doc["index"], "url": doc["url"],
                    "status": "failed", "data": None,
                    "error": {"code": code, "message": f"{code} at {doc['url']}",
                              "retryable": False}}
                   for doc in claimed[first:first + 200]]
        assert store.finish_items(records) == [True] * len(records)


# -- tests ------------------------------------------------------------------------------


def test_static_files_headers_and_redirect(scrapyd: ScrapydServer) -> None:
    page = scrapyd.call("GET", "/ui/", owner=None)
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert b"<script" in page.body and b"key-" not in page.body.split(b"<body>")[0]
    module = scrapyd.call("GET", "/ui/app.js", owner=None)
    assert module.status == 200 and module.headers["Content-Type"].startswith("text/javascript")
    for path in ("/ui/nope.js", "/ui/../scrapyd.conf", "/ui/%2e%2e/scrapyd.conf"):
        assert scrapyd.call("GET", path, owner=None).status == 404, path
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as moved:
        opener.open(scrapyd.url + "/ui", timeout=10)
    moved.value.close()
    assert moved.value.code == 301 and moved.value.headers["Location"] == "/ui/"


def test_key_prompt_and_batches_list(
    ui: Watched, scrapyd: ScrapydServer, site: ExampleSite, store: BatchStore
) -> None:
    spec = parse_batch(["https://example.com/a"], FIELDS)
    for _ in range(20):  # older, cancelled: the two real batches below top page 1 of 2
        store.cancel_batch(store.create_batch(spec, owner="bob")["_id"])
    done = submit(scrapyd, {"urls": [site.url(f"/products/{n}") for n in (1, 2, 3)],
                            "fields": FIELDS}, owner="bob")
    partial = submit(scrapyd, {"urls": [site.url("/products/4"), site.url("/status/404"),
                                        site.url("/products/5")],
                               "fields": FIELDS, "options": {"retries": 0}}, owner="bob")
    for batch_id in (done, partial):
        wait_final(scrapyd, batch_id, "bob")

    page = ui.page
    page.goto(f"{scrapyd.url}/ui/")
    expect(page.locator("#key-dialog")).to_be_visible()
    page.fill("#key-input", "not-a-key")
    page.click("#key-dialog button[type=submit]")
    expect(page.locator("#key-reason")).to_contain_text("invalid API key")
    enter_key(page, KEYS["bob"])

    rows = page.locator("#batches tbody tr")
    expect(rows.first).to_have_attribute("data-batch-id", partial)
    expect(rows.nth(1)).to_have_attribute("data-batch-id", done)
    expect(rows).to_have_count(20)
    first = rows.first
    expect(first.locator(".badge")).to_have_text("partial")
    expect(first.locator(".bar")).to_have_attribute("data-done", "3")
    expect(first.locator(".progress-cell")).to_contain_text("3 / 3 · 100%")
    expect(first.locator("td").nth(3)).to_have_text("1")  # failed
    expect(first.locator("td").nth(4)).to_have_text("2")  # records
    expect(rows.nth(1).locator(".badge")).to_have_text("completed")
    shot(page, "list")

    page.click("a[rel=next]")
    expect(page.locator(".pager span")).to_have_text("Page 2 of 2")
    expect(page.locator("#batches tbody tr .badge").first).to_have_text("cancelled")
    page.click("a[rel=prev]")
    page.select_option("#status-filter", "partial")
    expect(page).to_have_url(f"{scrapyd.url}/ui/#/?status=partial")
    expect(rows.first).to_have_attribute("data-batch-id", partial)
    expect(page.locator(f"#batches tbody tr[data-batch-id='{done}']")).to_have_count(0)
    for text in page.locator("#batches tbody .badge").all_inner_texts():
        assert text == "partial"

    storage = page.evaluate("() => [JSON.stringify(sessionStorage), localStorage.length,"
                            " document.cookie]")
    assert KEYS["bob"] in storage[0] and storage[1:] == [0, ""]
    assert KEYS["bob"] not in page.content()

    page.click(f"#batches tbody tr[data-batch-id='{partial}'] a")
    expect(page.locator("#batch-id")).to_have_text(partial)


def test_batch_page_progress_moves_then_items_and_exports(
    ui: Watched, scrapyd: ScrapydServer, site: ExampleSite, tmp_path: Path
) -> None:
    slow = [site.url(f"/slow?delay=1.5&n={n}&k={uuid.uuid4().hex[:6]}") for n in range(8)]
    shell = {"url": site.url("/app-shell/6"), "render_js": "always", "screenshot": True}
    urls = [*slow, site.url("/products/5"), site.url("/status/404"), shell]
    # the small /slow pages look like app shells: rendering them again would double the wait
    options = {"concurrency": 2, "retries": 0, "render_js": "never"}
    batch_id = submit(scrapyd, {"urls": urls, "fields": FIELDS, "options": options})

    page = ui.page
    open_ui(ui, scrapyd, f"/batches/{batch_id}")
    expect(page.locator("#progress-text")).to_have_attribute("data-total", "11")
    page.evaluate("""() => {
        window.seen = [];
        const note = () => {
            const done = document.querySelector('#progress-text')?.dataset.done;
            if (done !== undefined && window.seen.at(-1) !== +done) window.seen.push(+done);
        };
        new MutationObserver(note).observe(document.body,
            {subtree: true, childList: true, attributes: true});
        note();
    }""")
    page.wait_for_function("() => window.seen.some((done) => done > 0 && done < 11)")
    shot(page, "batch-running")
    expect(badge(page)).to_have_text("partial", timeout=BATCH_WAIT_MS)
    seen = page.evaluate("() => window.seen")
    assert seen == sorted(seen) and seen[-1] == 11 and len(seen) >= 2, seen
    expect(page.locator("[data-counter=completed]")).to_have_text("10")
    expect(page.locator("[data-counter=failed]")).to_have_text("1")
    expect(page.locator("#timing")).to_contain_text("pages / min")
    # the charts follow: the failure at once, the finishes with the next timeline (10 s)
    expect(page.locator("#chart-failures g")).to_have_attribute("data-code", "HTTP_ERROR")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#chart-progress rect')]"
        ".reduce((sum, bar) => sum + Number(bar.dataset.count), 0) === 11", timeout=30_000)
    shot(page, "batch")
    page.screenshot(path=str(ARTIFACTS / "dashboard-batch-viewport.png"))

    expect(page.locator("#error-codes")).to_contain_text("HTTP_ERROR")
    page.select_option("#item-code-filter", "HTTP_ERROR")
    expect(page.locator("#items tbody tr")).to_have_count(1)
    expect(row(page, 9)).to_contain_text("404")
    row(page, 9).click()
    expect(page.locator("#item-error")).to_contain_text("HTTP_ERROR")
    page.click("#item-close")
    page.select_option("#item-status-filter", "")

    row(page, 8).click()
    record = json.loads(page.locator("#item-record").inner_text())
    assert record == {key: product_expected(5)[key] for key in ("name", "sku", "price")}
    expect(page.locator("#item-evidence")).to_contain_text("jsonld")
    expect(page.locator("#item-valid")).to_have_text("Valid against the schema.")
    page.click("#item-close")

    row(page, 10).click()
    expect(page.locator("#item-dialog")).to_contain_text("headless")
    screenshot = page.locator("#item-screenshot img")
    expect(screenshot).to_be_visible()
    page.wait_for_function("() => document.querySelector('#item-screenshot img').naturalWidth > 0")
    assert json.loads(page.locator("#item-record").inner_text())["sku"] == "SKU-00006"
    shot(page, "item")
    page.click("#item-close")

    shot_path = f"/batches/{batch_id}/items/10/screenshot"
    png = scrapyd.call("GET", shot_path)
    assert png.status == 200 and png.body.startswith(b"\x89PNG\r\n\x1a\n")
    assert png.headers["Content-Type"] == "image/png"
    assert scrapyd.call("GET", shot_path, owner="bob").status == 403
    assert scrapyd.call("GET", shot_path, owner=None).status == 401
    for missing in ("8/screenshot", "99/screenshot", "10/other", "x/screenshot", "10"):
        answer = scrapyd.call("GET", f"/batches/{batch_id}/items/{missing}")
        assert (answer.status, answer.json()["error"]["code"]) == (404, "NOT_FOUND"), missing

    with page.expect_download() as jsonl:
        page.click("#export-jsonl")
    lines = Path(jsonl.value.path()).read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == list(range(11))
    assert jsonl.value.suggested_filename == f"{batch_id}.jsonl"
    with page.expect_download() as csv_file:
        page.click("#export-csv")
    table = list(csv.DictReader(io.StringIO(Path(csv_file.value.path()).read_text())))
    assert [r["index"] for r in table] == [str(n) for n in range(11)]
    assert table[9]["error_code"] == "HTTP_ERROR" and table[8]["data.name"] == "Product 5"


def test_cancel_and_retry_from_the_batch_page(
    ui: Watched, scrapyd: ScrapydServer, site: ExampleSite, store: BatchStore
) -> None:
    slow = [site.url(f"/slow?delay=6&n={n}&k={uuid.uuid4().hex[:6]}") for n in range(12)]
    running = submit(scrapyd, {"urls": slow, "fields": FIELDS,
                               "options": {"concurrency": 2, "timeout_per_url": 60,
                                           "retries": 0}})
    key = uuid.uuid4().hex[:8]
    flaky = [site.url(f"/flaky/{key}-{n}?fail=1&code=503") for n in range(3)]
    failing = submit(scrapyd, {"urls": [*flaky, site.url("/products/1")], "fields": FIELDS,
                               "options": {"retries": 0}})

    page = ui.page
    open_ui(ui, scrapyd, f"/batches/{running}")
    expect(page.locator("[data-counter=running]")).not_to_have_text("0", timeout=BATCH_WAIT_MS)
    page.click("#cancel-batch")
    expect(page.locator("#confirm-dialog")).to_be_visible()
    page.click("#confirm-yes")
    expect(badge(page)).to_have_text("cancelled")
    expect(page.locator("[data-counter=cancelled]")).to_have_text("12")
    expect(page.locator("#cancel-batch")).to_be_disabled()
    assert store.get_batch(running)["status"] == "cancelled"

    assert wait_final(scrapyd, failing)["counters"]["failed"] == 3
    page.goto(f"{scrapyd.url}/ui/#/batches/{failing}")
    expect(badge(page)).to_have_text("partial")
    expect(page.locator("#error-codes")).to_contain_text("HTTP_ERROR")
    page.check("#only-retryable")
    page.click("#retry-failed")
    expect(page.locator("#notice")).to_have_text("3 failed item(s) queued again.")
    expect(badge(page)).to_have_text("completed", timeout=BATCH_WAIT_MS)
    expect(page.locator("[data-counter=failed]")).to_have_text("0")
    expect(page.locator("[data-counter=completed]")).to_have_text("4")
    expect(page.locator("#error-codes")).to_be_hidden()
    expect(page.locator("#retry-failed")).to_be_disabled()
    shot(page, "batch-retried")
    assert [job["kind"] for job in store.get_batch(failing)["jobs"]] == ["submit", "retry"]


def test_domains_panel_worst_first_with_failed_items(
    ui: Watched, scrapyd: ScrapydServer, site: ExampleSite, other_site: ExampleSite
) -> None:
    key = uuid.uuid4().hex[:6]
    failing = [other_site.url(f"/status/503?n={n}&k={key}") for n in range(2)]
    healthy = [site.url(f"/products/{n}?k={key}") for n in (1, 2, 3)]
    urls = [healthy[0], *failing, *healthy[1:], site.url(f"/status/404?k={key}")]
    batch_id = submit(scrapyd, {"urls": urls, "fields": FIELDS,
                                "options": {"retries": 0, "render_js": "never"}})

    page = ui.page
    open_ui(ui, scrapyd, f"/batches/{batch_id}")  # while it runs: the panel follows the polls
    rows = page.locator("#domains-table tbody tr")
    expect(rows).to_have_count(2, timeout=BATCH_WAIT_MS)
    expect(badge(page)).to_have_text("partial", timeout=BATCH_WAIT_MS)
    # 503s are the breaker's errors (too few for a strike); a 404 fails its item, no error
    expect(rows.first.locator("td")).to_have_text(
        ["127.0.0.2", "closed", "2", "2", "100%", re.compile(r"\d"), "2 HTTP_ERROR 2"],
        timeout=BATCH_WAIT_MS,
    )
    expect(rows.nth(1).locator("td")).to_have_text(
        ["127.0.0.1", "closed", "4", "0", "0%", re.compile(r"\d"), "1 HTTP_ERROR 1"],
        timeout=BATCH_WAIT_MS,
    )
    expect(rows.first).to_have_attribute("data-breaker", "closed")
    expect(page.locator("#domains h2")).to_have_text("Domains")
    shot(page, "batch-domains")
    api = scrapyd.call("GET", f"/batches/{batch_id}?limit=1").json()["domains"]
    assert {(d["domain"], d["requests"], d["errors"]) for d in api} == {
        ("127.0.0.2", 2, 2), ("127.0.0.1", 4, 0)
    }


def test_why_items_failed_counts_are_the_api_failures(
    ui: Watched, scrapyd: ScrapydServer, site: ExampleSite, store: BatchStore
) -> None:
    key = uuid.uuid4().hex[:6]
    missing = [site.url(f"/status/404?n={n}&k={key}") for n in range(3)]
    # past the 3 s timeout, which the other pages meet even on a machine under load
    slow = [site.url(f"/slow?delay=8&n={n}&k={key}") for n in range(2)]
    urls = [site.url(f"/products/1?k={key}"), *slow, *missing, site.url(f"/products/2?k={key}")]
    batch_id = submit(scrapyd, {"urls": urls, "fields": FIELDS, "options": {
        "retries": 0, "render_js": "never", "timeout_per_url": 3, "concurrency": 8}})

    page = ui.page
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    open_ui(ui, scrapyd, f"/batches/{batch_id}")
    expect(badge(page)).to_have_text("partial", timeout=BATCH_WAIT_MS)
    failures = {"HTTP_ERROR": 3, "TIMEOUT": 2}
    expect_codes_table(page, scrapyd, batch_id, failures)
    assert failures == assert_counters_match_items(store, batch_id)["failures"]
    expect(page.locator("#error-codes tbody tr").first.locator("td").nth(2)).to_contain_text("404")
    # both examples shown: no fetch left to redraw the table under the click below
    expect(page.locator("#error-codes tr[data-code=TIMEOUT] td").nth(2)).not_to_be_empty()
    # the Domains panel still counts its failed items per host, by code
    expect(page.locator("#domains-table tbody tr").first.locator("td").last).to_have_text(
        "5 HTTP_ERROR 3 · TIMEOUT 2"
    )
    shot(page, "batch-error-codes")

    page.click("#error-codes button[data-code=TIMEOUT]")
    expect(page.locator("#item-code-filter")).to_have_value("TIMEOUT")
    expect(page.locator("#items tbody tr")).to_have_count(2)
    expect(page.locator("#items tbody td.mono")).to_have_text(["TIMEOUT", "TIMEOUT"])
    # each example is one item asked for by its code, not a read of every failed item
    examples = [url for url in requests if "/items?" in url and "limit=1" in url]
    assert {re.search(r"error_code=(\w+)", url)[1] for url in examples} == set(failures)


def test_why_items_failed_follows_a_big_running_batch(
    ui: Watched, scrapyd: ScrapydServer, store: BatchStore
) -> None:
    # more failed items than the dashboard would ever read one by one while a batch runs
    urls = [f"https://example.com/p/{n}" for n in range(1200)]
    batch_id = store.create_batch(parse_batch(urls, FIELDS), owner="alice")["_id"]
    store.mark_running(batch_id)
    fail_items(store, batch_id, range(0, 700), "HTTP_ERROR")
    fail_items(store, batch_id, range(700, 1050), "TIMEOUT")

    page = ui.page
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    open_ui(ui, scrapyd, f"/batches/{batch_id}")
    expect(badge(page)).to_have_text("running")
    expect_codes_table(page, scrapyd, batch_id, {"HTTP_ERROR": 700, "TIMEOUT": 350})
    expect(page.locator("#error-codes tbody tr").first.locator("td").nth(2)).to_have_text(
        "HTTP_ERROR at https://example.com/p/0"
    )

    # live: the next polls bring the new counts, a new code and its example
    fail_items(store, batch_id, range(1050, 1080), "TIMEOUT")
    fail_items(store, batch_id, range(1080, 1090), "CONNECTION_FAILED")
    expect(page.locator("[data-counter=failed]")).to_have_text("1,090")
    failures = {"HTTP_ERROR": 700, "TIMEOUT": 380, "CONNECTION_FAILED": 10}
    expect_codes_table(page, scrapyd, batch_id, failures)
    assert failures == assert_counters_match_items(store, batch_id)["failures"]

    page.select_option("#item-code-filter", "CONNECTION_FAILED")
    expect(page.locator("#items-summary")).to_have_text("10 items")
    expect(row(page, 1080)).to_contain_text("CONNECTION_FAILED")
    mine = [url for url in requests if batch_id in url]
    assert not [url for url in mine if "format=ndjson" in url], "read every failed item"
    examples = [url for url in mine if "/items?" in url and "limit=1" in url]
    # one example per code, again only for a count that changed
    assert sum("error_code=HTTP_ERROR" in url for url in examples) == 1, examples
    assert sum("error_code=CONNECTION_FAILED" in url for url in examples) == 1, examples
    assert sum("error_code=TIMEOUT" in url for url in examples) in (1, 2), examples
    store.cancel_batch(batch_id)


def test_domain_names_are_text_and_open_breakers_come_first(
    ui: Watched, scrapyd: ScrapydServer, store: BatchStore
) -> None:
    batch_id = store.create_batch(parse_batch(["https://example.com/a"], FIELDS),
                                  owner="alice")["_id"]
    store.cancel_batch(batch_id)

    def entry(domain: str, requests: int, errors: int, delay: float, breaker: str) -> dict:
        return {"domain": domain, "requests": requests, "errors": errors, "delay": delay,
                "breaker": breaker}

    store.save_domain_health(batch_id, "host:1:a", [
        entry("busy.example", 40, 12, 0.0, "closed"),
        entry("slow.example", 20, 10, 1.0, "slowed"),
        entry(XSS_DOMAIN, 8, 8, 4.0, "open"),
    ], top=20)

    page = ui.page
    open_ui(ui, scrapyd, f"/batches/{batch_id}")
    rows = page.locator("#domains-table tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.locator("td:first-child")).to_have_text(
        [XSS_DOMAIN, "slow.example", "busy.example"]
    )
    expect(rows.first.locator("td")).to_have_text(
        [XSS_DOMAIN, "open", "8", "8", "100%", "4.0 s", "0"]
    )
    expect(rows.nth(1).locator("td").nth(4)).to_have_text("50%")
    expect(rows.nth(2).locator("td").nth(4)).to_have_text("30%")
    expect(rows.first).to_have_attribute("data-domain", XSS_DOMAIN)
    assert page.locator("#domains img, #domains b").count() == 0
    assert page.evaluate("() => window.__xss") is None


def test_submit_form_errors_next_to_their_fields(
    ui: Watched, scrapyd: ScrapydServer, site: ExampleSite, store: BatchStore
) -> None:
    page = ui.page
    open_ui(ui, scrapyd, "/")
    page.click("a[href='#/new']")
    expect(page.locator("h1")).to_have_text("New batch")
    profiles = page.locator("#schema-profile option").all_inner_texts()
    assert profiles == profile_names()
    expect(page.locator("#option-concurrency")).to_have_attribute("max", "64")
    before = store.batches.count_documents({})

    page.fill("#urls", f"{site.url('/products/7')}\n# a comment\nftp://x/\n")
    page.click("#submit-batch")
    urls_error = page.locator("fieldset:has(#urls) #error-urls")
    expect(urls_error).to_contain_text("INVALID_URL")
    expect(urls_error).to_contain_text("#1 ftp://x/")

    page.fill("#urls", f"{site.url('/products/7')}\n{site.url('/products/8')}")
    page.fill("#schema-json", '{"type": "object", "properties": {"name": ')
    expect(page.locator("#schema-json-status")).to_contain_text("Invalid JSON")
    expect(page.locator("#schema-json")).to_have_attribute("aria-invalid", "true")
    page.click("#submit-batch")
    schema_error = page.locator("fieldset:has(#schema-json) #error-schema")
    expect(schema_error).to_contain_text("Invalid JSON")

    page.fill("#schema-json", '{"type": "object", "properties": {"name": {"type": "strin"}}}')
    expect(page.locator("#schema-json-status")).to_have_text("Valid JSON.")
    page.click("#submit-batch")
    expect(schema_error).to_contain_text("INVALID_SCHEMA")
    expect(urls_error).to_be_hidden()
    shot(page, "submit-errors")

    page.check("#schema-mode-fields")
    expect(page.locator("#field-rows tr")).to_have_count(2)
    page.click("text=Add field")
    page.locator("#field-rows tr").last.locator(".field-type").select_option("integer")
    page.click("#submit-batch")
    expect(schema_error).to_have_text(
        "INVALID_SCHEMA: field entry [2] needs a non-empty 'field' name"
    )

    page.check("#schema-mode-profile")
    page.select_option("#schema-profile", "product")
    page.fill("#option-concurrency", "1000")
    page.click("#submit-batch")
    expect(page.locator(".option:has(#option-concurrency) #error-option-concurrency")
           ).to_contain_text("INVALID_OPTION: concurrency")
    expect(schema_error).to_be_hidden()
    assert store.batches.count_documents({}) == before

    page.fill("#option-concurrency", "4")
    page.fill("#urls", "")
    urls_csv = f"sku,url\n1,{site.url('/products/7')}\n2,\"{site.url('/products/8')}\"\n"
    page.set_input_files("#urls-file", files=[
        {"name": "urls.csv", "mimeType": "text/csv", "buffer": urls_csv.encode()}
    ])
    expect(page.locator("#url-count")).to_have_text("2 URL(s) from the file")
    page.click("#submit-batch")
    expect(page.locator("#batch-id")).to_have_text(re.compile(r"b_[0-9a-f]{32}"))
    batch_id = page.locator("#batch-id").inner_text()
    expect(badge(page)).to_have_text("completed", timeout=BATCH_WAIT_MS)
    batch = store.get_batch(batch_id)
    assert batch["options"]["concurrency"] == 4
    assert [item["data"]["name"] for item in store.iter_items(batch_id)] == [
        "Product 7", "Product 8"
    ]


def test_xss_payloads_in_records_are_text_and_webhook_attempts(
    ui: Watched, scrapyd: ScrapydServer, xss_site: str, receiver: Receiver
) -> None:
    url = f"{xss_site}/p?q=<img/src=x/onerror=alert(3)>"
    # the sku is too long: the validation error message quotes it too
    schema = {"type": "object", "properties": {"name": {"type": "string"},
                                               "sku": {"type": "string", "maxLength": 5}}}
    options = {"formats": ["json", "html", "text"], "render_js": "never"}
    receiver.status = 500
    batch_id = submit(scrapyd, {"urls": [url], "schema": schema, "options": options,
                                "webhook_url": receiver.url})
    assert wait_final(scrapyd, batch_id)["status"] == "failed"
    wait_for(lambda: receiver.received, what="a first webhook attempt")
    receiver.status = 204
    wait_for(lambda: scrapyd.call("GET", f"/batches/{batch_id}").json()["webhook"]["status"]
             == "delivered", what="the webhook to be delivered")

    page = ui.page
    open_ui(ui, scrapyd, f"/batches/{batch_id}")
    deliveries = page.locator("#deliveries tbody tr")
    expect(deliveries).to_have_count(len(receiver.received))
    expect(deliveries.first).to_contain_text("500")
    expect(deliveries.last).to_contain_text("delivered")
    expect(page.locator("#webhook")).not_to_contain_text("whsec_")
    expect(row(page, 0).locator("td.url")).to_have_text(url)
    row(page, 0).click()
    record = json.loads(page.locator("#item-record").inner_text())
    assert record == {"name": clean_text(XSS_NAME), "sku": XSS_SKU}
    assert record["name"] == (
        '<script >window.__xss = 1</script ><img src=x onerror="window.__xss = 2" >'
    )
    expect(page.locator("#item-dialog .url")).to_contain_text("onerror=alert(3)")
    expect(page.locator("#item-error")).to_contain_text("VALIDATION_FAILED")
    expect(page.locator("#item-validation-errors li")).to_have_text(
        f"sku: {XSS_SKU!r} is too long"
    )
    page.locator("#item-dialog summary", has_text="html").click()
    page.locator("#item-dialog summary", has_text="text").click()
    expect(page.locator("#item-dialog pre.content").first).to_contain_text(
        '<script>window.__xss = 3</script><img src="x" onerror="window.__xss = 4">'
    )
    expect(page.locator("#item-dialog pre.content").nth(1)).to_contain_text(
        "<script>window.__xss = 5</script>"
    )
    shot(page, "xss-item")
    assert page.evaluate("() => window.__xss") is None
    assert page.locator("img[src=x], #item-dialog script").count() == 0
    assert page.evaluate("() => document.scripts.length") == 1  # the dashboard's own module


RECORD_SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string"}, "price": {"type": "number"},
    "offers": {"type": "object", "properties": {"currency": {"type": "string"}}},
    "tags": {"type": "array", "items": {"type": "string"}},
}}


def finish_records(store: BatchStore, batch_id: str, indexes: range) -> None:
    """Lease the items and write records: every 10th fails validation on its price."""
    claimed = store.claim(batch_id, "test-worker", indexes, 600)
    records = []
    for doc in claimed:
        n, bad = doc["index"], doc["index"] % 10 == 9
        records.append({
            "batch_id": batch_id, "index": n, "url": doc["url"],
            "status": "failed" if bad else "completed",
            "data": {"name": f"Product {n}", "price": "n/a" if bad else float(n % 37),
                     "offers": {"currency": "EUR"}, "tags": ["new", "sale", "blue", "xl"]},
            "evidence": {"name": "jsonld", "price": "microdata", "offers": "jsonld"},
            "validation": {"valid": not bad, "errors": [
                {"path": "price", "message": "'n/a' is not of type 'number'"}] if bad else []},
            "error": {"code": "VALIDATION_FAILED", "message": "price", "retryable": False}
            if bad else None,
        })
    assert all(store.finish_items(records))


def test_records_tab_named_batches_and_charts(
    ui: Watched, scrapyd: ScrapydServer, store: BatchStore
) -> None:
    word = uuid.uuid4().hex[:8]
    urls = [f"https://{'a' if n % 3 else 'b'}.example/p/{n}" for n in range(120)]
    batch_id = store.create_batch(
        parse_batch(urls, RECORD_SCHEMA), owner="alice",
        extra={"name": f"Spring prices {word}", "tags": ["shop-a", word]})["_id"]
    store.mark_running(batch_id)
    finish_records(store, batch_id, range(0, 100))

    page = ui.page
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    open_ui(ui, scrapyd, "/")
    page.fill("#batch-search", f"spring {word}")
    rows = page.locator("#batches tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-batch-id", batch_id)
    expect(rows.first.locator(".batch-name")).to_have_text(f"Spring prices {word}")
    expect(rows.first.locator(".tag")).to_have_text(["shop-a", word])
    expect(rows.first.locator("[data-cell=urls]")).to_have_text("120")
    expect(rows.first.locator("[data-cell=domains]")).to_have_text("a.example (80), b.example (40)")
    expect(rows.first.locator("[data-cell=fields]")).to_have_text(
        "name, price, offers.currency, tags")
    expect(page).to_have_url(re.compile(r"#/\?q=spring"))
    shot(page, "list-search")

    rows.first.locator("a").click()
    expect(page.locator("#batch-name")).to_have_text(f"Spring prices {word}")
    # the charts: pages per minute from the timeline, failures by code
    bars = page.locator("#chart-progress rect")
    expect(bars.first).to_be_attached()
    assert sum(int(n) for n in bars.evaluate_all("bars => bars.map(b => b.dataset.count)")) == 100
    expect(page.locator("#chart-failures g")).to_have_attribute("data-code", "VALIDATION_FAILED")
    expect(page.locator("#chart-failures g")).to_have_attribute("data-count", "10")

    page.click("#tab-button-records")
    expect(page).to_have_url(re.compile(r"tab=records"))
    table = page.locator("#records-table")
    expect(table.locator("thead th")).to_have_text(
        ["#", "Status", "name", "price", "offers.currency", "tags"])
    expect(table.locator("tbody tr")).to_have_count(50)
    expect(page.locator("#records-summary")).to_have_text("120 records")
    first = table.locator("tbody tr[data-index='0'] td")
    expect(first).to_have_text(
        ["0", "completed", "Product 0", "0", "EUR", "[new, sale, blue … +1]"])
    expect(first.nth(3)).to_have_attribute("title", "source: microdata")
    expect(first.nth(4)).to_have_attribute("title", "source: jsonld")
    failed = table.locator("tbody tr[data-index='9'] td[data-field=price]")
    expect(failed).to_have_class(re.compile("field-failed"))
    expect(failed).to_have_text("n/a")
    shot(page, "records")

    # sorted by the API: by price, descending on a second click; items without one come last
    page.click("#records-table th[data-field=price] button")
    page.click("#records-table th[data-field=price] button")
    expect(table.locator("th[data-field=price]")).to_have_attribute("aria-sort", "descending")
    api = scrapyd.call("GET", f"/batches/{batch_id}/items?sort=-data.price&limit=50"
                              "&fields=index").json()
    expect(table.locator("tbody tr").first).to_have_attribute(
        "data-index", str(api["items"][0]["index"]))
    indexes = table.locator("tbody tr").evaluate_all("rows => rows.map(r => +r.dataset.index)")
    assert indexes == [item["index"] for item in api["items"]]

    page.select_option("#records-status", "failed")
    expect(table.locator("tbody tr")).to_have_count(10)
    page.select_option("#records-field", "name")
    page.fill("#records-match", "product 1")
    expect(page.locator("#records-summary")).to_have_text("1 record")  # Product 19
    expect(table.locator("tbody tr").first).to_have_attribute("data-index", "19")

    # back to every record in input order, then the last of the API's pages
    page.fill("#records-match", "")
    page.select_option("#records-status", "")
    page.click("#records-table th[data-field=price] button")
    expect(table.locator("th[data-field=price]")).to_have_attribute("aria-sort", "none")
    expect(page.locator("#records-summary")).to_have_text("120 records")  # the match is gone
    expect(table.locator("tbody tr").first).to_have_attribute("data-index", "0")
    for number in (2, 3):
        page.click("#records .pager button:has-text('Next')")
        expect(page.locator("#records .pager span")).to_have_text(f"Page {number} of 3")
    expect(table.locator("tbody tr")).to_have_count(20)
    expect(table.locator("tbody tr").first).to_have_attribute("data-index", "100")
    expect(table.locator("tbody tr[data-index='100'] .badge")).to_have_text("pending")

    # live: the items that finish come to the page through the light polls
    finish_records(store, batch_id, range(100, 110))
    expect(table.locator("tbody tr[data-index='100'] .badge")).to_have_text("completed")
    expect(table.locator("tbody tr[data-index='109'] td[data-field=price]")).to_have_class(
        re.compile("field-failed"))
    page.wait_for_function(
        "() => [...document.querySelectorAll('#chart-progress rect')]"
        ".reduce((sum, bar) => sum + Number(bar.dataset.count), 0) === 110")
    polls = [url for url in requests if f"/batches/{batch_id}?" in url]
    assert polls[0].endswith("limit=1&fields=index"), polls[0]  # the inputs, once
    assert all("limit=0" in url for url in polls[1:]), polls
    item_reads = [url for url in requests if f"/batches/{batch_id}/items?" in url]
    assert any("updated_after=" in url for url in item_reads), item_reads
    assert not any("include=content" in url for url in item_reads)

    table.locator("tbody tr[data-index='105']").click()
    record = json.loads(page.locator("#item-record").inner_text())
    assert record["name"] == "Product 105" and record["offers"] == {"currency": "EUR"}
    page.click("#item-close")
    assert [url for url in requests if "include=content" in url][-1].endswith(
        "page=106&limit=1&include=content")
    store.cancel_batch(batch_id)


CSV_FIXED = ["index", "url", "status", "http_status", "render_mode", "error_code",
             "error_message"]


def export_csv(page: Page, scrapyd: ScrapydServer, batch_id: str) -> list[list[str]]:
    """The batch page's CSV export, as rows (the header first); the key is entered once."""
    page.goto(f"{scrapyd.url}/ui/#/batches/{batch_id}")
    if not page.evaluate("sessionStorage.length"):
        enter_key(page, KEYS["alice"])
    expect(page.locator("#batch-id")).to_have_text(batch_id)
    with page.expect_download() as download:
        page.click("#export-csv")
    return list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))


def test_csv_export_has_a_column_per_field(
    ui: Watched, scrapyd: ScrapydServer, store: BatchStore
) -> None:
    one = store.create_batch(parse_batch([f"https://a.example/p/{n}" for n in range(3)],
                                         RECORD_SCHEMA), owner="alice")["_id"]
    store.mark_running(one)
    finish_records(store, one, range(3))
    header, *rows = export_csv(ui.page, scrapyd, one)
    # no `record` column (it numbers a list page's records); nested objects as a.b
    assert header == [*CSV_FIXED, "data.name", "data.price", "data.offers.currency", "data.tags"]
    assert rows[1][:3] == ["1", "https://a.example/p/1", "completed"]
    assert rows[1][7:] == ["Product 1", "1", "EUR", '["new","sale","blue","xl"]']

    lists = store.create_batch(parse_batch(["https://b.example/list", "https://b.example/one"],
                                           RECORD_SCHEMA, None, {"max_items_per_url": 5}),
                               owner="alice")["_id"]
    store.mark_running(lists)
    claimed = store.claim(lists, "test-worker", range(2), 600)
    data = [[{"name": "A", "price": 1.5, "offers": {"currency": "USD"}},
             {"name": "B", "offers": {"currency": "EUR", "note": "x"}, "stock": 3}],
            {"name": "C", "price": 2}]
    assert all(store.finish_items([
        {"batch_id": lists, "index": doc["index"], "url": doc["url"], "status": "completed",
         "data": data[doc["index"]], "validation": {"valid": True, "errors": []}}
        for doc in claimed]))
    header, *rows = export_csv(ui.page, scrapyd, lists)
    # a list page's records each get a row, numbered; fields outside the schema come last
    assert header == [*CSV_FIXED, "record", "data.name", "data.price", "data.offers.currency",
                      "data.tags", "data.offers.note", "data.stock"]
    assert [row[:1] + row[7:] for row in rows] == [
        ["0", "0", "A", "1.5", "USD", "", "", ""],
        ["0", "1", "B", "", "EUR", "", "x", "3"],
        ["1", "", "C", "2", "", "", "", ""],
    ]
