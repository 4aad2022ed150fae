"""The ``batchscraper`` API commands against a real Scrapyd: what goes to stdout and stderr,
exit codes, the inputs the command line accepts like ``scrapy crawl`` does, and what ``submit``
and ``schedule add`` pass on (webhook events and metadata, monitors, comparison): stored on the
batch or the schedule's template, or refused in one line with every problem and nothing
stored."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from batchscraper.client import verify_webhook
from batchscraper.demo.site import ExampleSite
from batchscraper.events import EVENT_TYPES
from batchscraper.inputs.profiles import profile_schema
from batchscraper.store import BatchStore
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


def cli(scrapyd: ScrapydServer, *args: str, **kw: Any) -> list[str]:
    return [sys.executable, "-m", "batchscraper.cli", *args, "--url", scrapyd.url,
            "--api-key", KEYS["alice"]]


def test_submit_profile_and_wait_keeps_stdout_for_the_answer(
    scrapyd: ScrapydServer, site: ExampleSite, store: BatchStore
) -> None:
    command = cli(scrapyd, "submit", "--urls", site.url("/products/21"),
                  "--schema", "profile:product", "--wait")
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)  # only the 202 answer: progress lines went to stderr
    assert "completed" in result.stderr.splitlines()[-1]
    assert store.get_batch(answer["batch_id"])["schema"] == profile_schema("product")
    [item] = store.iter_items(answer["batch_id"])
    assert item["data"]["name"] == "Product 21"

    status = subprocess.run(cli(scrapyd, "status", answer["batch_id"], "--wait"), cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0
    assert status.stdout.splitlines() == status.stderr.splitlines()[-1:]  # the final line
    assert "pending=0 leased=0 running=0 total=1" in status.stdout


def test_a_closed_output_pipe_is_a_quiet_exit(
    scrapyd: ScrapydServer, site: ExampleSite, store: BatchStore
) -> None:
    submitted = subprocess.run(
        cli(scrapyd, "submit", "--urls", ",".join(site.url(f"/products/{n}") for n in (22, 23)),
            "--schema", "profile:product", "--wait"),
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    batch_id = json.loads(submitted.stdout)["batch_id"]
    for command in (("export", batch_id), ("status", batch_id), ("list",)):
        process = subprocess.Popen(cli(scrapyd, *command), cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()  # the reader is gone before the first line is written
        with process.stderr:
            stderr = process.stderr.read()
        assert process.wait(timeout=60) == 0, (command, stderr)
        assert stderr == "", command


def test_every_input_problem_in_one_answer(
    scrapyd: ScrapydServer, openapi: dict, store: BatchStore
) -> None:
    before = (store.batches.count_documents({}), store.items.count_documents({}))
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    answer = scrapyd.call("POST", "/batches", {
        "urls": ["https://ok.example/", "ftp://x/", "http://"], "schema": schema,
        "options": {"concurrency": 100, "retries": 9},
    })
    error = assert_error(openapi, answer, 422, "INVALID_URL")
    assert [(d["field"], d["code"], d.get("index"), d.get("option")) for d in error["details"]] == [
        ("urls", "INVALID_URL", 1, None), ("urls", "INVALID_URL", 2, None),
        ("options", "INVALID_OPTION", None, "concurrency"),
        ("options", "INVALID_OPTION", None, "retries"),
    ]
    dated = {"urls": ["https://ok.example/"], "schema": schema,
             "options": {"date_filter": {"field": "published", "from": "2024-01-01"}}}
    assert_error(openapi, scrapyd.call("POST", "/batches", dated), 422, "INVALID_OPTION")
    empty = {"urls": ["https://ok.example/"], "schema": {"type": "object"}}
    assert_error(openapi, scrapyd.call("POST", "/batches", empty), 422, "INVALID_SCHEMA")
    missing = scrapyd.call("POST", "/batches", {"schema": schema})
    assert_error(openapi, missing, 400, "INVALID_INPUT")
    assert (store.batches.count_documents({}), store.items.count_documents({})) == before


def test_the_favicon_is_served(scrapyd: ScrapydServer) -> None:
    answer = scrapyd.call("GET", "/favicon.ico", owner=None)
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "image/svg+xml"
    assert answer.body.startswith(b"<svg")


def run_cli(scrapyd: ScrapydServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(scrapyd, *args), cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)


def answer_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON answer a command printed first on stdout."""
    assert result.returncode == 0, result.stderr
    return dict(json.JSONDecoder().raw_decode(result.stdout)[0])


def stored_counts(store: BatchStore) -> tuple[int, int, int]:
    return (store.batches.count_documents({}), store.items.count_documents({}),
            store.db["schedules"].count_documents({}))


def test_submit_passes_webhook_events_metadata_and_monitors_on(
    scrapyd: ScrapydServer, openapi: dict, site: ExampleSite, store: BatchStore,
    receiver: Receiver, tmp_path: Path,
) -> None:
    metadata = tmp_path / "metadata.json"
    metadata.write_text(json.dumps({"team": "pricing", "run": 7}))
    rules = {"min_completed_ratio": 1, "min_field_coverage": {"price": 0.9}, "min_records": 3}
    urls = [site.url(f"/products/{n}") for n in (61, 62)]
    submitted = run_cli(
        scrapyd, "submit", "--urls", ",".join(urls), "--schema", json.dumps(FIELDS),
        "--webhook-url", receiver.url, "--webhook-secret", SECRET,
        "--webhook-event", "item.completed", "--webhook-event", "batch.alert",
        "--webhook-metadata", f"@{metadata}", "--monitors", json.dumps(rules), "--wait")
    batch_id = answer_of(submitted)["batch_id"]

    stored = store.get_batch(batch_id)
    assert {key: stored["webhook"][key] for key in ("url", "secret", "events", "metadata")} == {
        "url": receiver.url, "secret": SECRET, "events": ["item.completed", "batch.alert"],
        "metadata": {"team": "pricing", "run": 7}}
    assert stored["monitor_rules"] == rules
    detail = scrapyd.call("GET", f"/batches/{batch_id}").json()
    assert_matches(openapi, "BatchDetail", detail)
    assert detail["monitor_rules"] == rules
    assert [(m["name"], m["value"], m["threshold"], m["ok"]) for m in detail["monitors"]] == [
        ("min_completed_ratio", 1, 1, True), ("min_field_coverage.price", 1, 0.9, True),
        ("min_records", 2, 3, False)]
    status = run_cli(scrapyd, "status", batch_id)
    assert status.returncode == 0, status.stderr
    assert status.stdout.rstrip().endswith(
        "monitors: min_completed_ratio=1 ok (min 1), min_field_coverage.price=1 ok (min 0.9), "
        "min_records=2 FAILED (min 3)")

    # the events asked for, signed with the secret given, each with the metadata
    wait_for(lambda: len(receiver.received) >= 3, timeout=30, what="3 webhook events")
    payloads = [verify_webhook(SECRET, headers, raw) for headers, raw in receiver.received]
    assert sorted((p["type"], p["data"].get("index")) for p in payloads) == [
        ("batch.alert", None), ("item.completed", 0), ("item.completed", 1)]
    assert {json.dumps(p["metadata"], sort_keys=True) for p in payloads} == {
        json.dumps({"run": 7, "team": "pricing"})}
    alert = next(p for p in payloads if p["type"] == "batch.alert")
    assert [m["name"] for m in alert["data"]["monitors"]] == ["min_records"]


BAD_SUBMITS = {
    "monitors": (
        ["--monitors", json.dumps({"min_completed_ratio": 2, "min_field_coverage": {"colour": 0.5},
                                   "max_error_ratio": {"http": 0.1}, "min_records": -1,
                                   "max_pages": 3})],
        "422 INVALID_MONITORS: monitors.min_completed_ratio: a number from 0 to 1; "
        "monitors.min_field_coverage.colour: not a field of the schema (['name', 'price']); "
        "monitors.max_error_ratio.http: an error code such as HTTP_ERROR; "
        "monitors.min_records: a whole number, 0 or more; monitors.max_pages: unknown monitor; "
        "known: ['min_completed_ratio', 'min_field_coverage', 'max_error_ratio', 'min_records']",
    ),
    "webhook events and metadata": (
        ["--webhook-url", "http://127.0.0.1:9/hook", "--webhook-event", "batch.done",
         "--webhook-event", "item.changed", "--webhook-event", "Item.Failed",
         "--webhook-metadata", "[1, 2]"],
        f"422 INVALID_WEBHOOK: webhook.events[0]: one of {list(EVENT_TYPES)}; "
        f"webhook.events[2]: one of {list(EVENT_TYPES)}; "
        "webhook.metadata: a JSON object of at most 4096 bytes",
    ),
    "compare": (
        ["--compare-to", "b_" + "0" * 32, "--ignore-field", "colour", "--ignore-field", "name"],
        "422 INVALID_COMPARE: ignore_fields[0]: not a field of the schema (['name', 'price']): "
        f"'colour'; compare_to: no batch b_{'0' * 32}",
    ),
    "unreadable values, webhook settings without its URL": (
        ["--monitors", "{min_records: 3}", "--webhook-metadata", "@/nonexistent/meta.json",
         "--webhook-event", "item.changed", "--webhook-secret", SECRET],
        "INVALID_INPUT: monitors: not valid JSON: Expecting property name enclosed in double "
        "quotes; webhook-metadata: cannot read /nonexistent/meta.json: No such file or "
        "directory; --webhook-secret, --webhook-event, --webhook-metadata: need --webhook-url",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SUBMITS))
def test_bad_submit_settings_are_one_line_with_every_problem_and_store_nothing(
    case: str, scrapyd: ScrapydServer, site: ExampleSite, store: BatchStore
) -> None:
    args, expected = BAD_SUBMITS[case]
    before = stored_counts(store)
    result = run_cli(scrapyd, "submit", "--urls", site.url("/products/63"),
                     "--schema", json.dumps(FIELDS), *args)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr == f"batchscraper submit: error: {expected}\n"
    assert stored_counts(store) == before


def test_schedule_add_puts_events_monitors_and_comparison_on_its_template(
    scrapyd: ScrapydServer, openapi: dict, site: ExampleSite, store: BatchStore,
    receiver: Receiver,
) -> None:
    urls = [site.url(f"/products/{n}") for n in (64, 65)]
    baseline = scrapyd.client().submit(urls, FIELDS)["batch_id"]
    assert scrapyd.client().wait(baseline, interval=0.3, timeout=90)["status"] == "completed"
    rules = {"min_field_coverage": {"price": 0.5}, "max_error_ratio": {"HTTP_ERROR": 0}}
    added = run_cli(
        scrapyd, "schedule", "add", "--cron", "0 3 * * *", "--paused", "--name", "watched",
        "--urls", ",".join(urls), "--schema", json.dumps(FIELDS),
        "--webhook-url", receiver.url, "--webhook-event", "item.changed",
        "--webhook-event", "batch.alert", "--webhook-metadata", '{"watch": "prices"}',
        "--monitors", json.dumps(rules), "--compare-to", baseline, "--ignore-field", "name")
    schedule_id = answer_of(added)["schedule_id"]

    template = store.db["schedules"].find_one({"_id": schedule_id})["batch"]
    assert template["webhook"]["secret"].startswith("whsec_")  # generated, kept for every run
    assert {key: value for key, value in template.items() if key != "webhook"} == {
        "urls": urls, "schema": FIELDS, "monitors": rules, "compare_to": baseline,
        "ignore_fields": ["name"]}
    assert {key: value for key, value in template["webhook"].items() if key != "secret"} == {
        "url": receiver.url, "events": ["item.changed", "batch.alert"],
        "metadata": {"watch": "prices"}}
    shown = scrapyd.call("GET", f"/schedules/{schedule_id}").json()
    assert_matches(openapi, "Schedule", shown)

    # a run is a batch with them: compared with the baseline, judged by the monitors
    run_id = answer_of(run_cli(scrapyd, "schedule", "run", schedule_id))["batch_id"]
    final = scrapyd.client().wait(run_id, interval=0.3, timeout=90)
    assert (final["status"], final["compare_to"]) == ("completed", baseline)
    assert final["changes"]["unchanged"] == 2
    run = store.get_batch(run_id)
    assert (run["monitor_rules"], run["compare"]) == (rules, {"to": baseline,
                                                            "ignore_fields": ["name"]})
    assert (run["webhook"]["events"], run["webhook"]["metadata"]) == (
        ["item.changed", "batch.alert"], {"watch": "prices"})
    show = run_cli(scrapyd, "schedule", "show", schedule_id)
    assert show.returncode == 0, show.stderr
    assert show.stdout.splitlines()[-1].endswith(
        "monitors: max_error_ratio.HTTP_ERROR=0 ok (max 0), "
        "min_field_coverage.price=1 ok (min 0.5)")
    assert receiver.received == []  # nothing changed, nothing failed: no event


def test_bad_schedule_settings_are_one_line_with_every_problem_and_store_nothing(
    scrapyd: ScrapydServer, site: ExampleSite, store: BatchStore
) -> None:
    before = stored_counts(store)
    result = run_cli(
        scrapyd, "schedule", "add", "--cron", "0 3 * * *", "--urls", site.url("/products/66"),
        "--schema", json.dumps(FIELDS), "--monitors",
        json.dumps({"min_records": 1.5, "min_field_coverage": {"sku": 0.5}}))
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "batchscraper schedule: error: 422 INVALID_SCHEDULE: "
        "batch.monitors.min_records: a whole number, 0 or more; "
        "batch.monitors.min_field_coverage.sku: not a field of the schema (['name', 'price'])\n")
    events = run_cli(
        scrapyd, "schedule", "add", "--cron", "0 3 * * *", "--urls", site.url("/products/66"),
        "--schema", json.dumps(FIELDS), "--webhook-url", "http://127.0.0.1:9/hook",
        "--webhook-event", "item.gone", "--webhook-metadata", '"prices"')
    assert events.returncode == 2, events.stderr
    assert events.stderr == (
        "batchscraper schedule: error: 422 INVALID_SCHEDULE: "
        f"batch.webhook.events[0]: one of {list(EVENT_TYPES)}; "
        "batch.webhook.metadata: a JSON object of at most 4096 bytes\n")
    assert stored_counts(store) == before
