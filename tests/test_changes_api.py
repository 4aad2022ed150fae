"""Change detection end to end: a real Scrapyd runs a schedule twice against a local shop whose
price changes and whose page disappears between the runs; the second run's stored items and
counts say changed (old -> new), gone and unchanged, and ``GET /batches/{id}/changes`` serves
them (pages and NDJSON, owner-scoped). Bad ``compare_to`` / ``ignore_fields`` store nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from batchscraper.client import verify_webhook
from batchscraper.mongo import connect
from tests.api_fixtures import (  # noqa: F401  (fixtures)
    KEYS,
    REPO,
    Receiver,
    ScrapydServer,
    assert_error,
    assert_matches,
    openapi_fixture,
    receiver_fixture,
    scrapyd_fixture,
    wait_for,
)

pytestmark = pytest.mark.slow

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FIELDS = [{"field": "name", "type": "string", "required": True},
          {"field": "price", "type": "number"}]


class Shop:
    """A local shop whose products (name, price) the test changes between runs."""

    def __init__(self, products: dict[int, tuple[str, str | None]]) -> None:
        self.products = dict(products)
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                number = self.path.rsplit("/", 1)[-1]
                found = shop.products.get(int(number)) if number.isdigit() else None
                if found is None:
                    self.send_error(404)
                    return
                body = shop.page(*found)
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @staticmethod
    def page(name: str, price: str | None) -> bytes:
        """A product page; without a price (None), the page shows none anywhere."""
        ld: dict[str, Any] = {"@context": "https://schema.org", "@type": "Product", "name": name}
        shown = ""
        if price is not None:
            ld["offers"] = {"@type": "Offer", "price": price, "priceCurrency": "EUR"}
            shown = f'<p class="price">{price} EUR</p>'
        return (f'<!DOCTYPE html><html><head><title>{name}</title><script type="application/'
                f'ld+json">{json.dumps(ld)}</script></head><body><h1>{name}</h1>{shown}'
                '</body></html>').encode()

    def url(self, number: int) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/products/{number}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(name="shop")
def shop_fixture() -> Iterator[Shop]:
    running = Shop({1: ("Mug", "19.99"), 2: ("Cup", "5.00"), 3: ("Jar", "7.00")})
    yield running
    running.close()


def cli_runner(scrapyd: ScrapydServer) -> Any:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "batchscraper.cli", *args, "--url", scrapyd.url,
                   "--api-key", KEYS["alice"]]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60,
                              check=False)

    return run


def message_id(headers: dict[str, str]) -> str:
    return {name.lower(): value for name, value in headers.items()}["webhook-id"]


def run_schedule(scrapyd: ScrapydServer, schedule_id: str) -> dict[str, Any]:
    ran = scrapyd.call("POST", f"/schedules/{schedule_id}/run")
    assert ran.status == 202, ran.body
    return dict(scrapyd.client().wait(ran.json()["batch_id"], interval=0.3, timeout=90))


def test_a_price_change_and_a_gone_page_between_two_runs_of_a_schedule(
    scrapyd: ScrapydServer, openapi: dict, shop: Shop, mongo_uri: str, receiver: Receiver
) -> None:
    webhook = {"url": receiver.url, "secret": SECRET, "metadata": {"watch": "prices"},
               "events": ["item.changed", "batch.completed"]}
    body = {"name": "watch prices", "cron": "0 3 * * *",
            "batch": {"urls": [shop.url(n) for n in (1, 2, 3)], "fields": FIELDS,
                      "options": {"retries": 0}, "webhook": webhook}}
    created = scrapyd.call("POST", "/schedules", body)
    assert created.status == 201, created.body
    schedule_id = created.json()["schedule_id"]
    first = run_schedule(scrapyd, schedule_id)
    assert first["status"] == "completed" and first["compare_to"] is None

    shop.products[1] = ("Mug", "17.49")  # the price drops
    del shop.products[3]  # the page is taken down
    second = run_schedule(scrapyd, schedule_id)
    assert second["status"] == "partial"
    state = scrapyd.call("GET", f"/batches/{second['batch_id']}?limit=0").json()
    assert_matches(openapi, "BatchState", state)
    assert state["compare_to"] == first["batch_id"]
    assert {k: n for k, n in state["changes"].items() if n} == {
        "changed": 1, "unchanged": 1, "gone": 1
    }
    schedule = scrapyd.call("GET", f"/schedules/{schedule_id}").json()
    assert_matches(openapi, "Schedule", schedule)
    assert schedule["last_run"]["changes"] == state["changes"]  # the last run's change counts

    # what is stored on each item, and that the counts equal a recount over them
    client = connect(mongo_uri)
    try:
        items = client.get_default_database()["items"]
        stored = {doc["index"]: doc.get("change")
                  for doc in items.find({"batch_id": second["batch_id"]})}
    finally:
        client.close()
    assert stored == {
        0: {"status": "changed", "fields": {"price": {"old": 19.99, "new": 17.49}}},
        1: {"status": "unchanged"},
        2: {"status": "gone"},
    }

    changes_path = f"/batches/{second['batch_id']}/changes"
    page = scrapyd.call("GET", changes_path).json()
    assert_matches(openapi, "ChangesPage", page)
    assert [(item["index"], item["change"]["status"]) for item in page["items"]] == [
        (0, "changed"), (2, "gone")
    ]
    assert page["items"][0]["data"]["price"] == 17.49
    assert page["pagination"]["total"] == 2
    second_page = scrapyd.call("GET", changes_path + "?limit=1&page=2").json()
    assert [item["index"] for item in second_page["items"]] == [2]
    unchanged = scrapyd.call("GET", changes_path + "?change=unchanged").json()
    assert [item["url"] for item in unchanged["items"]] == [shop.url(2)]
    streamed = scrapyd.call("GET", changes_path + "?format=ndjson")
    assert streamed.headers["Content-Type"].startswith("application/x-ndjson")
    assert [json.loads(line)["index"] for line in streamed.body.splitlines()] == [0, 2]
    assert_error(openapi, scrapyd.call("GET", changes_path, owner="bob"), 403, "FORBIDDEN")
    assert_error(openapi, scrapyd.call("GET", changes_path + "?change=moved"), 400,
                 "INVALID_INPUT")

    # item.changed for the changed and the gone item (the first run had nothing to compare
    # with), signed, once each; batch.completed for each run; all with the metadata
    def received() -> list[tuple[str, dict[str, Any]]]:
        return [(message_id(headers), verify_webhook(SECRET, headers, raw))
                for headers, raw in list(receiver.received)]

    wait_for(lambda: len(received()) >= 4, timeout=30, what="4 webhook events")
    events = received()
    assert all(payload["metadata"] == {"watch": "prices"} for _, payload in events)
    changed = sorted((payload["data"]["index"], payload["data"]["change"]["status"])
                     for _, payload in events if payload["type"] == "item.changed")
    assert changed == [(0, "changed"), (2, "gone")]
    assert sorted(payload["data"]["batch_id"] for _, payload in events
                  if payload["type"] == "batch.completed") == sorted(
        [first["batch_id"], second["batch_id"]])
    ids = [msg_id for msg_id, _ in events]
    assert len(ids) == len(set(ids)) == 4

    # the CLI, as a user runs it
    cli = cli_runner(scrapyd)
    shown = cli("changes", second["batch_id"])
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        f"     0  changed    {shop.url(1)}  price: 19.99 -> 17.49",
        f"     2  gone       {shop.url(3)}",
    ]
    gone = cli("changes", second["batch_id"], "--change", "gone", "--json")
    assert [json.loads(line)["url"] for line in gone.stdout.splitlines()] == [shop.url(3)]


def test_bad_compare_settings_are_refused_over_http_and_nothing_is_stored(
    scrapyd: ScrapydServer, openapi: dict, shop: Shop, mongo_uri: str
) -> None:
    made = scrapyd.call("POST", "/batches", {"urls": [shop.url(2)], "fields": FIELDS})
    assert made.status == 202, made.body
    source = made.json()["batch_id"]
    client = connect(mongo_uri)
    try:
        batches = client.get_default_database()["batches"]
        before = batches.count_documents({})
        refused = scrapyd.call("POST", "/batches", {
            "urls": [shop.url(2)], "fields": [{"field": "title", "type": "string"}],
            "compare_to": source, "ignore_fields": ["price"],
        })
        error = assert_error(openapi, refused, 422, "INVALID_COMPARE")
        assert [(p["field"], p["code"]) for p in error["details"]] == [
            ("ignore_fields[0]", "INVALID_COMPARE"), ("compare_to", "SCHEMA_MISMATCH")
        ]
        cli = cli_runner(scrapyd)(
            "submit", "--urls", shop.url(2), "--schema", json.dumps(FIELDS),
            "--compare-to", source, "--ignore-field", "colour")
        assert cli.returncode == 2 and "INVALID_COMPARE" in cli.stderr, cli.stderr
        other_owner = scrapyd.call("POST", "/batches", {
            "urls": [shop.url(2)], "fields": FIELDS, "compare_to": source}, owner="bob")
        assert_error(openapi, other_owner, 403, "FORBIDDEN")
        assert batches.count_documents({}) == before
    finally:
        client.close()


def test_a_field_coverage_monitor_alerts_when_the_site_stops_serving_the_field(
    scrapyd: ScrapydServer, openapi: dict, shop: Shop, receiver: Receiver
) -> None:
    body = {"name": "price coverage", "cron": "0 3 * * *",
            "batch": {"urls": [shop.url(n) for n in (1, 2, 3)], "fields": FIELDS,
                      "options": {"retries": 0},
                      "monitors": {"min_field_coverage": {"price": 0.9}, "min_records": 3},
                      "webhook": {"url": receiver.url, "secret": SECRET,
                                  "events": ["batch.alert"], "metadata": {"team": "pricing"}}}}
    created = scrapyd.call("POST", "/schedules", body)
    assert created.status == 201, created.body
    schedule_id = created.json()["schedule_id"]
    first = run_schedule(scrapyd, schedule_id)
    assert [(m["name"], m["ok"]) for m in first["monitors"]] == [
        ("min_field_coverage.price", True), ("min_records", True)
    ]

    shop.products[1] = ("Mug", None)  # the site stops serving the price on two pages
    shop.products[2] = ("Cup", None)
    second = run_schedule(scrapyd, schedule_id)
    assert second["status"] == "completed"
    state = scrapyd.call("GET", f"/batches/{second['batch_id']}?limit=0").json()
    assert_matches(openapi, "BatchState", state)
    assert state["monitors"] == [
        {"name": "min_field_coverage.price", "value": 0.3333, "threshold": 0.9, "ok": False},
        {"name": "min_records", "value": 3, "threshold": 3, "ok": True},
    ]
    wait_for(lambda: receiver.received, timeout=30, what="the batch.alert event")
    ((headers, raw),) = receiver.received  # the first run raised none
    alert = verify_webhook(SECRET, headers, raw)
    assert (alert["type"], alert["metadata"]) == ("batch.alert", {"team": "pricing"})
    assert alert["data"]["batch_id"] == second["batch_id"]
    assert [m["name"] for m in alert["data"]["monitors"]] == ["min_field_coverage.price"]
    assert message_id(headers) == f"msg_{second['batch_id']}_alert_1"
