"""Change detection end to end: a real Scrapyd runs a schedule twice against the example site,
which reprices a product and takes a page down between the runs; the second run's stored items and
counts say changed (old -> new), gone and unchanged, and ``GET /batches/{id}/changes`` serves
them (pages and NDJSON, owner-scoped). Bad ``compare_to`` / ``ignore_fields`` store nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from batchscraper.client import verify_webhook
from batchscraper.demo.site import ExampleSite, product_expected
from batchscraper.store.mongo import connect
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


@pytest.fixture(name="shop")
def shop_fixture() -> Iterator[ExampleSite]:
    """The example site, this test's own: what it reprices and takes down stays here."""
    with ExampleSite() as running:
        yield running


def product_url(shop: ExampleSite, n: int) -> str:
    return shop.url(f"/products/{n}")


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
    scrapyd: ScrapydServer, openapi: dict, shop: ExampleSite, mongo_uri: str, receiver: Receiver
) -> None:
    webhook = {"url": receiver.url, "secret": SECRET, "metadata": {"watch": "prices"},
               "events": ["item.changed", "batch.completed"]}
    body = {"name": "watch prices", "cron": "0 3 * * *",
            "batch": {"urls": [product_url(shop, n) for n in (1, 2, 3)], "fields": FIELDS,
                      "options": {"retries": 0}, "webhook": webhook}}
    created = scrapyd.call("POST", "/schedules", body)
    assert created.status == 201, created.body
    schedule_id = created.json()["schedule_id"]
    first = run_schedule(scrapyd, schedule_id)
    assert first["status"] == "completed" and first["compare_to"] is None

    old_price = product_expected(1)["price"]
    shop.reprice(1, 7.49)  # the price drops
    shop.take_down(3)  # the page is taken down (404)
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
        0: {"status": "changed", "fields": {"price": {"old": old_price, "new": 7.49}}},
        1: {"status": "unchanged"},
        2: {"status": "gone"},
    }

    changes_path = f"/batches/{second['batch_id']}/changes"
    page = scrapyd.call("GET", changes_path).json()
    assert_matches(openapi, "ChangesPage", page)
    assert [(item["index"], item["change"]["status"]) for item in page["items"]] == [
        (0, "changed"), (2, "gone")
    ]
    assert page["items"][0]["data"]["price"] == 7.49
    assert page["pagination"]["total"] == 2
    second_page = scrapyd.call("GET", changes_path + "?limit=1&page=2").json()
    assert [item["index"] for item in second_page["items"]] == [2]
    unchanged = scrapyd.call("GET", changes_path + "?change=unchanged").json()
    assert [item["url"] for item in unchanged["items"]] == [product_url(shop, 2)]
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
        f"     0  changed    {product_url(shop, 1)}  price: {old_price} -> 7.49",
        f"     2  gone       {product_url(shop, 3)}",
    ]
    gone = cli("changes", second["batch_id"], "--change", "gone", "--json")
    assert [json.loads(line)["url"] for line in gone.stdout.splitlines()] == [product_url(shop, 3)]


def test_bad_compare_settings_are_refused_over_http_and_nothing_is_stored(
    scrapyd: ScrapydServer, openapi: dict, shop: ExampleSite, mongo_uri: str
) -> None:
    made = scrapyd.call("POST", "/batches", {"urls": [product_url(shop, 2)], "fields": FIELDS})
    assert made.status == 202, made.body
    source = made.json()["batch_id"]
    client = connect(mongo_uri)
    try:
        batches = client.get_default_database()["batches"]
        before = batches.count_documents({})
        refused = scrapyd.call("POST", "/batches", {
            "urls": [product_url(shop, 2)], "fields": [{"field": "title", "type": "string"}],
            "compare_to": source, "ignore_fields": ["price"],
        })
        error = assert_error(openapi, refused, 422, "INVALID_COMPARE")
        assert [(p["field"], p["code"]) for p in error["details"]] == [
            ("ignore_fields[0]", "INVALID_COMPARE"), ("compare_to", "SCHEMA_MISMATCH")
        ]
        cli = cli_runner(scrapyd)(
            "submit", "--urls", product_url(shop, 2), "--schema", json.dumps(FIELDS),
            "--compare-to", source, "--ignore-field", "colour")
        assert cli.returncode == 2 and "INVALID_COMPARE" in cli.stderr, cli.stderr
        other_owner = scrapyd.call("POST", "/batches", {
            "urls": [product_url(shop, 2)], "fields": FIELDS, "compare_to": source}, owner="bob")
        assert_error(openapi, other_owner, 403, "FORBIDDEN")
        assert batches.count_documents({}) == before
    finally:
        client.close()


def test_a_field_coverage_monitor_alerts_when_the_site_stops_serving_the_field(
    scrapyd: ScrapydServer, openapi: dict, shop: ExampleSite, receiver: Receiver
) -> None:
    body = {"name": "price coverage", "cron": "0 3 * * *",
            "batch": {"urls": [product_url(shop, n) for n in (1, 2, 3)], "fields": FIELDS,
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

    shop.reprice(1, None)  # the site stops serving the price on two pages
    shop.reprice(2, None)
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
