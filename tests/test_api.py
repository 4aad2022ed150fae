"""The batch HTTP API in a real Scrapyd: submit, poll, list, cancel, retry, errors, idempotency.

Responses are checked against the served /openapi.json; every refused request
is checked to have stored nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest

from batchscraper.demo.site import ExampleSite, product_expected
from batchscraper.inputs import parse_batch
from batchscraper.store import BatchStore
from tests.api_fixtures import (  # noqa: F401  (fixtures)
    KEYS,
    REPO,
    ScrapydServer,
    assert_error,
    assert_matches,
    openapi_fixture,
    scrapyd_fixture,
    wait_for,
    write_scrapyd_home,
)
from tests.conftest import assert_counters_match_items

pytestmark = pytest.mark.slow

FIELDS = [
    {"field": "name", "type": "string", "required": True},
    {"field": "sku", "type": "string"},
    {"field": "price", "type": "number"},
]
FINAL = ("completed", "partial", "failed", "cancelled")


def submit(scrapyd: ScrapydServer, body: dict[str, Any], owner: str = "alice", **kw: Any) -> dict:
    answer = scrapyd.call("POST", "/batches", body, owner=owner, **kw)
    assert answer.status == 202, answer.body[:2000]
    return dict(answer.json())


def wait_final(scrapyd: ScrapydServer, batch_id: str, owner: str = "alice") -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        batch = scrapyd.call("GET", f"/batches/{batch_id}?limit=1", owner=owner).json()
        return batch if batch["status"] in FINAL else None

    return dict(wait_for(final, timeout=90, what=f"batch {batch_id} to finish"))


def stored_counts(store: BatchStore) -> tuple[int, ...]:
    return tuple(
        store.db[name].count_documents({}) for name in ("batches", "items", "idempotency")
    )


def test_submit_poll_completed_records(
    scrapyd: ScrapydServer, openapi: dict, site: ExampleSite, store: BatchStore
) -> None:
    urls = [site.url(f"/products/{n}") for n in range(1, 7)] + [site.url("/status/404")]
    body = {"urls": urls, "fields": FIELDS, "options": {"concurrency": 4, "retries": 0}}
    answer = scrapyd.call("POST", "/batches", body)
    assert answer.status == 202, answer.body
    accepted = answer.json()
    assert_matches(openapi, "BatchAccepted", accepted)
    batch_id = accepted["batch_id"]
    assert (accepted["status"], accepted["total"], len(accepted["jobs"])) == ("pending", 7, 1)
    assert answer.headers["Location"] == f"/batches/{batch_id}"

    seen: list[float] = []
    final = scrapyd.client().wait(
        batch_id, interval=0.3, timeout=90, progress=lambda b: seen.append(b["progress"]["percent"])
    )
    assert final["status"] == "partial"
    assert seen == sorted(seen) and seen[-1] == 100.0
    counters = final["counters"]
    assert (counters["completed"], counters["failed"], counters["total"]) == (6, 1, 7)

    detail = scrapyd.call("GET", f"/batches/{batch_id}?limit=3").json()
    assert_matches(openapi, "BatchDetail", detail)
    assert [item["index"] for item in detail["items"]] == [0, 1, 2]
    assert detail["items_pagination"] == {"page": 1, "limit": 3, "total": 7, "total_pages": 3}
    assert detail["jobs"][0]["kind"] == "submit" and detail["started_at"] and detail["finished_at"]
    for item in detail["items"]:
        expected = product_expected(item["index"] + 1)
        assert item["data"] == {key: expected[key] for key in ("name", "sku", "price")}

    failed = scrapyd.call("GET", f"/batches/{batch_id}?status=failed").json()
    assert [(i["index"], i["error"]["code"]) for i in failed["items"]] == [(6, "HTTP_ERROR")]
    assert failed["items_pagination"]["total"] == 1
    by_code = scrapyd.call("GET", f"/batches/{batch_id}?error_code=HTTP_ERROR").json()
    assert [item["index"] for item in by_code["items"]] == [6]
    none = scrapyd.call("GET", f"/batches/{batch_id}/items?error_code=TIMEOUT").json()
    assert (none["items"], none["pagination"]["total"]) == ([], 0)
    stream = scrapyd.call("GET", f"/batches/{batch_id}/items?error_code=HTTP_ERROR&format=ndjson")
    assert [json.loads(line)["index"] for line in stream.body.splitlines()] == [6]
    bad_code = scrapyd.call("GET", f"/batches/{batch_id}?error_code=http%20error")
    assert "error_code" in assert_error(openapi, bad_code, 400, "INVALID_INPUT")["message"]

    page = scrapyd.call("GET", f"/batches/{batch_id}/items?page=2&limit=3").json()
    assert_matches(openapi, "ItemsPage", page)
    assert [item["index"] for item in page["items"]] == [3, 4, 5]

    records = list(scrapyd.client().iter_items(batch_id))
    assert [record["index"] for record in records] == list(range(7))
    for record in records:
        assert_matches(openapi, "ItemRecord", record)
    assert records[5]["data"]["sku"] == product_expected(6)["sku"]
    assert assert_counters_match_items(store, batch_id)["status"] == "partial"
    assert batch_id not in json.dumps(scrapyd.listjobs()["running"])


def test_records_are_served_with_the_keys_they_were_extracted_with(
    scrapyd: ScrapydServer, openapi: dict, site: ExampleSite, store: BatchStore
) -> None:
    """``$name`` is stored as ``%24name`` (MongoDB refuses ``$`` keys) and served as ``$name``."""
    schema = {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string"}, "$name": {"type": "string"}}}
    body = {"urls": [site.url("/hostile/dollar-keys")], "schema": schema,
            "options": {"retries": 0}}
    batch_id = submit(scrapyd, body)["batch_id"]
    assert wait_final(scrapyd, batch_id)["status"] == "completed"
    (stored,) = store.iter_items(batch_id)
    assert stored["keys_escaped"] is True and "%24name" in stored["data"]
    (record,) = scrapyd.client().iter_items(batch_id)
    assert_matches(openapi, "ItemRecord", record)
    assert record["data"] == {"name": "Dollar product", "$name": "Dollar product"}
    assert record["evidence"]["$name"] == "jsonld"
    detail = scrapyd.call("GET", f"/batches/{batch_id}").json()
    assert detail["items"][0]["data"] == record["data"]


def test_filtered_streams_hold_every_matching_item(
    scrapyd: ScrapydServer, store: BatchStore
) -> None:
    """More matching items than one read of the stream (BATCH_API_STREAM_CHUNK = 200)."""
    urls = [f"https://example.com/p/{n}" for n in range(450)]
    batch_id = store.create_batch(parse_batch(urls, FIELDS), owner="alice")["_id"]
    store.cancel_batch(batch_id, "test")
    for query in ("status=cancelled", "error_code=CANCELLED"):
        stream = scrapyd.call("GET", f"/batches/{batch_id}/items?{query}&format=ndjson")
        indexes = [json.loads(line)["index"] for line in stream.body.splitlines()]
        assert indexes == list(range(450)), (query, len(indexes))


def test_list_is_owner_scoped_newest_first_and_paginated(
    scrapyd: ScrapydServer, openapi: dict, store: BatchStore
) -> None:
    spec = parse_batch(["https://example.com/a"], FIELDS)
    created = []
    for _ in range(7):
        created.append(store.create_batch(spec, owner="carol")["_id"])
        time.sleep(0.005)  # distinct created_at (milliseconds in MongoDB)
    for batch_id in created[:2]:
        store.batches.update_one({"_id": batch_id}, {"$set": {"status": "completed"}})

    pages = []
    for number in (1, 2, 3):
        answer = scrapyd.call("GET", f"/batches?page={number}&limit=3", owner="carol")
        assert answer.status == 200
        assert_matches(openapi, "BatchList", answer.json())
        pages.append(answer.json())
    assert [p["pagination"] for p in pages] == [
        {"page": n, "limit": 3, "total": 7, "total_pages": 3} for n in (1, 2, 3)
    ]
    listed = [batch["batch_id"] for page in pages for batch in page["batches"]]
    assert listed == created[::-1]

    done = scrapyd.call("GET", "/batches?status=completed", owner="carol").json()
    assert {b["batch_id"] for b in done["batches"]} == set(created[:2])
    alices = scrapyd.call("GET", "/batches?limit=50").json()["batches"]
    assert not set(created) & {b["batch_id"] for b in alices}
    too_many = scrapyd.call("GET", "/batches?limit=51", owner="carol")
    assert "limit" in assert_error(openapi, too_many, 400, "INVALID_INPUT")["message"]
    assert_error(openapi, scrapyd.call("GET", "/batches?status=done"), 400, "INVALID_INPUT")


def test_cancel_mid_run(
    scrapyd: ScrapydServer, openapi: dict, site: ExampleSite, store: BatchStore
) -> None:
    urls = [site.url(f"/slow?delay=6&n={n}") for n in range(12)]
    options = {"concurrency": 2, "timeout_per_url": 60, "retries": 0}
    batch_id = submit(scrapyd, {"urls": urls, "fields": FIELDS, "options": options})["batch_id"]
    wait_for(
        lambda: store.get_batch(batch_id)["counters"]["running"] > 0, what="items to be running"
    )

    answer = scrapyd.call("DELETE", f"/batches/{batch_id}")
    assert answer.status == 200, answer.body
    cancelled = answer.json()
    assert_matches(openapi, "CancelResult", cancelled)
    assert cancelled["status"] == "cancelled"
    assert cancelled["jobs"]["signalled"] + cancelled["jobs"]["unqueued"] == 1
    assert cancelled["counters"]["cancelled"] == 12 and cancelled["progress"]["percent"] == 100.0

    items = list(store.iter_items(batch_id))
    assert {item["status"] for item in items} == {"cancelled"}
    assert {item["error"]["code"] for item in items} == {"CANCELLED"}
    job_id = store.get_batch(batch_id)["jobs"][0]["id"]

    def job_gone() -> bool:
        jobs = scrapyd.listjobs()
        return job_id not in {job["id"] for job in jobs["pending"] + jobs["running"]}

    wait_for(job_gone, timeout=60, what="the Scrapyd job to stop")
    assert job_id in {job["id"] for job in scrapyd.listjobs()["finished"]}
    assert assert_counters_match_items(store, batch_id)["status"] == "cancelled"
    again = scrapyd.call("DELETE", f"/batches/{batch_id}")
    assert again.status == 200 and again.json()["status"] == "cancelled"


def test_retry_failed_items(
    scrapyd: ScrapydServer, openapi: dict, site: ExampleSite, store: BatchStore
) -> None:
    key = uuid.uuid4().hex[:8]
    urls = [site.url(f"/flaky/{key}-{n}?fail=1&code=503") for n in range(3)]
    urls += [site.url("/status/404"), site.url("/products/1")]
    options = {"retries": 0, "concurrency": 4}
    batch_id = submit(scrapyd, {"urls": urls, "fields": FIELDS, "options": options})["batch_id"]
    first = wait_final(scrapyd, batch_id)
    assert (first["status"], first["counters"]["failed"]) == ("partial", 4)
    assert scrapyd.call("GET", f"/batches/{batch_id}").json()["failures"] == {"HTTP_ERROR": 4}

    answer = scrapyd.call("POST", f"/batches/{batch_id}/retry", {"only_retryable": True})
    assert answer.status == 202, answer.body
    retrying = answer.json()
    assert_matches(openapi, "RetryAccepted", retrying)
    assert (retrying["retried"], retrying["status"]) == (3, "pending")
    counters = retrying["counters"]
    assert (counters["failed"], counters["pending"], counters["completed"]) == (1, 3, 1)

    second = wait_final(scrapyd, batch_id)
    assert (second["status"], second["counters"]["completed"], second["counters"]["failed"]) == (
        "partial", 4, 1,
    )
    items = list(store.iter_items(batch_id))
    assert [item["status"] for item in items] == ["completed"] * 3 + ["failed", "completed"]
    assert [item["attempts"] for item in items[:4]] == [2, 2, 2, 1]
    assert items[0]["data"]["name"] == "Product 1"
    assert_counters_match_items(store, batch_id)
    assert scrapyd.call("GET", f"/batches/{batch_id}").json()["failures"] == {"HTTP_ERROR": 1}

    nothing = scrapyd.call("POST", f"/batches/{batch_id}/retry", {"only_retryable": True})
    assert_error(openapi, nothing, 409, "NOTHING_TO_RETRY")
    everything = scrapyd.call("POST", f"/batches/{batch_id}/retry", raw=b"")
    assert everything.status == 202 and everything.json()["retried"] == 1
    third = wait_final(scrapyd, batch_id)
    assert third["counters"]["failed"] == 1
    assert store.items.find_one({"_id": f"{batch_id}:3"})["attempts"] == 2
    detail = scrapyd.call("GET", f"/batches/{batch_id}").json()
    assert [job["kind"] for job in detail["jobs"]] == ["submit", "retry", "retry"]


def test_refused_requests_store_nothing(
    scrapyd: ScrapydServer, openapi: dict, store: BatchStore
) -> None:
    good = {"urls": ["https://example.com/1"], "fields": FIELDS}
    before = stored_counts(store)
    cases = [
        (scrapyd.call("POST", "/batches", good, owner=None), 401, "UNAUTHORIZED"),
        (scrapyd.call("POST", "/batches", good, owner=None, headers={"X-API-Key": "nope"}),
         401, "UNAUTHORIZED"),
        (scrapyd.call("POST", "/batches", raw=b'{"urls": [', ), 400, "INVALID_INPUT"),
        (scrapyd.call("POST", "/batches", [1, 2]), 400, "INVALID_INPUT"),
        (scrapyd.call("POST", "/batches", {**good, "optoins": {}}), 400, "INVALID_INPUT"),
        (scrapyd.call("POST", "/batches", {**good, "schema": {"type": "object"}}),
         400, "INVALID_INPUT"),
        (scrapyd.call("POST", "/batches", {**good, "urls": ["https://ok.example/", "ftp://x/",
                                                            "http://"]}), 422, "INVALID_URL"),
        (scrapyd.call("POST", "/batches", {**good, "fields": [{"field": "x", "type": "money"}]}),
         422, "INVALID_SCHEMA"),
        (scrapyd.call("POST", "/batches", {**good, "options": {"concurrency": 1000}}),
         422, "INVALID_OPTION"),
        (scrapyd.call("POST", "/batches", {**good, "webhook": {"url": "https://h.example/",
                                                               "secret": "plain"}}),
         422, "INVALID_WEBHOOK"),
        (scrapyd.call("POST", "/batches", {**good, "urls": ["https://example.com/p"] * 10_001}),
         413, "TOO_LARGE"),
        (scrapyd.call("POST", "/batches", raw=b" " * 1_000_001), 413, "TOO_LARGE"),
        (scrapyd.call("POST", "/batches", {"rerun_of": "b_" + "0" * 32}), 404, "NOT_FOUND"),
        (scrapyd.call("PUT", "/batches", good), 405, "METHOD_NOT_ALLOWED"),
        # "@path" is the command line's way to read a file: over HTTP it reads nothing
        (scrapyd.call("POST", "/batches", {**good, "urls": "@/etc/passwd"}), 400, "INVALID_INPUT"),
        (scrapyd.call("POST", "/batches", {"urls": good["urls"], "schema": "@/etc/hostname"}),
         400, "INVALID_INPUT"),
    ]
    for answer, status, code in cases:
        error = assert_error(openapi, answer, status, code)
        if code == "INVALID_URL":
            assert [(d["index"], d["url"]) for d in error["details"]] == [
                (1, "ftp://x/"), (2, "http://")
            ]
    assert b"root:" not in cases[-2][0].body
    assert cases[0][0].headers["WWW-Authenticate"].startswith("Bearer")
    # several kinds of problem in one request: one answer lists them all, each with its code
    webhook = {"url": "https://h.example/", "secret": "plain", "events": ["item.eaten"]}
    for body, codes in (
        ({**good, "webhook": webhook, "monitors": {"min_records": -1}},
         ["INVALID_WEBHOOK", "INVALID_WEBHOOK", "INVALID_MONITORS"]),
        ({**good, "urls": ["ftp://x/"], "webhook": webhook},
         ["INVALID_WEBHOOK", "INVALID_WEBHOOK", "INVALID_URL"]),
    ):
        error = assert_error(openapi, scrapyd.call("POST", "/batches", body), 422,
                             "INVALID_WEBHOOK")
        assert [detail.get("code", error["code"]) for detail in error["details"]] == codes
    assert stored_counts(store) == before


def test_owner_scoping_and_state_errors(
    scrapyd: ScrapydServer, openapi: dict, store: BatchStore
) -> None:
    spec = parse_batch(["https://example.com/a"], FIELDS)
    alices = store.create_batch(spec, owner="alice")["_id"]
    finished = store.create_batch(spec, owner="alice")["_id"]
    store.batches.update_one({"_id": finished}, {"$set": {"status": "completed"}})
    before = stored_counts(store)
    for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/retry"), ("GET", "/items")):
        answer = scrapyd.call(method, f"/batches/{alices}{path}", {}, owner="bob")
        assert_error(openapi, answer, 403, "FORBIDDEN")
    assert_error(openapi, scrapyd.call("POST", "/batches", {"rerun_of": alices}, owner="bob"),
                 403, "FORBIDDEN")
    for path in ("/batches/b_" + "f" * 32, "/batches/nope", f"/batches/{alices}/nope",
                 f"/batches/{alices}/nope/deeper", f"/batches/{alices}/retry/x",
                 f"/batches/{alices}/items/0/extra"):
        assert_error(openapi, scrapyd.call("GET", path), 404, "NOT_FOUND")
    assert_error(openapi, scrapyd.call("DELETE", f"/batches/{finished}"), 409, "INVALID_STATE")
    assert_error(openapi, scrapyd.call("POST", f"/batches/{alices}/retry", {}), 409,
                 "INVALID_STATE")
    assert_error(openapi, scrapyd.call("POST", f"/batches/{finished}/retry", {"x": 1}), 400,
                 "INVALID_INPUT")
    assert stored_counts(store) == before
    assert store.get_batch(alices)["status"] == "pending"
    assert store.get_batch(finished)["status"] == "completed"
    store.cancel_batch(alices)


def test_idempotency_key(scrapyd: ScrapydServer, openapi: dict, store: BatchStore) -> None:
    key = {"Idempotency-Key": f"nightly-{uuid.uuid4().hex}"}
    body = {"urls": ["https://example.invalid/x"], "fields": FIELDS,
            "options": {"retries": 0}}
    first = scrapyd.call("POST", "/batches", body, headers=key)
    assert first.status == 202
    batches_after_first = store.batches.count_documents({})
    again = scrapyd.call("POST", "/batches", body, headers=key)
    assert again.status == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert_matches(openapi, "BatchAccepted", again.json())
    assert again.json()["batch_id"] == first.json()["batch_id"]
    assert again.json()["jobs"] == first.json()["jobs"]
    conflict = scrapyd.call("POST", "/batches", {**body, "prompt": "other"}, headers=key)
    assert_error(openapi, conflict, 409, "IDEMPOTENCY_CONFLICT")
    assert store.batches.count_documents({}) == batches_after_first
    bobs = scrapyd.call("POST", "/batches", body, headers=key, owner="bob")
    assert bobs.status == 202 and bobs.json()["batch_id"] != first.json()["batch_id"]
    for answer in (first, bobs):
        wait_final(scrapyd, answer.json()["batch_id"], "bob" if answer is bobs else "alice")


def test_rerun_of_from_the_cli(
    scrapyd: ScrapydServer, site: ExampleSite, store: BatchStore, tmp_path: Any
) -> None:
    urls = [site.url("/products/11"), {"url": site.url("/products/12"), "mode": "html"}]
    source = submit(scrapyd, {"urls": urls, "fields": FIELDS})["batch_id"]
    assert wait_final(scrapyd, source)["status"] == "completed"

    command = [sys.executable, "-m", "batchscraper.cli", "submit", "--url", scrapyd.url,
               "--api-key", KEYS["alice"], "--rerun-of", source, "--wait"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rerun = json.loads(result.stdout[: result.stdout.index("\n}") + 2])["batch_id"]
    assert rerun != source
    old, new = list(store.iter_items(source)), list(store.iter_items(rerun))
    assert [(i["url"], i.get("request")) for i in new] == [
        (i["url"], i.get("request")) for i in old
    ]
    assert [i["data"] for i in new] == [i["data"] for i in old]
    assert store.get_batch(rerun)["rerun_of"] == source

    out = tmp_path / "records.jsonl"
    export = [sys.executable, "-m", "batchscraper.cli", "export", rerun, "-o", str(out),
              "--url", scrapyd.url, "--api-key", KEYS["alice"]]
    assert subprocess.run(export, cwd=REPO, timeout=60).returncode == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in records] == [0, 1]

    # --wait exits 0 only for a batch whose every item completed
    partial = submit(scrapyd, {"urls": [site.url("/status/404"), site.url("/products/13")],
                               "fields": FIELDS, "options": {"retries": 0}})["batch_id"]
    status = [sys.executable, "-m", "batchscraper.cli", "status", "--wait",
              "--url", scrapyd.url, "--api-key", KEYS["alice"]]
    waited = subprocess.run([*status, partial], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert waited.returncode == 1 and "partial" in waited.stdout, waited.stdout
    assert subprocess.run([*status, rerun], cwd=REPO, timeout=60).returncode == 0
    assert records[1]["data"]["name"] == "Product 12"
    bad = subprocess.run(
        [sys.executable, "-m", "batchscraper.cli", "status", "b_" + "0" * 32, "--url",
         scrapyd.url, "--api-key", KEYS["alice"]], capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 2 and "NOT_FOUND" in bad.stderr


def test_scrapyd_endpoints_need_basic_auth(scrapyd: ScrapydServer, openapi: dict) -> None:
    assert scrapyd.call("GET", "/listjobs.json", owner=None).status == 401
    assert scrapyd.call("GET", "/listjobs.json", owner=None, basic_auth=True).status == 200
    assert_error(openapi, scrapyd.call("GET", "/batches", owner=None, basic_auth=True), 401,
                 "UNAUTHORIZED")
    bearer = {"Authorization": f"Bearer {KEYS['bob']}"}
    assert scrapyd.call("GET", "/batches", owner=None, headers=bearer).status == 200
    assert set(openapi["paths"]) == {
        "/batches", "/batches/{batch_id}", "/batches/{batch_id}/items",
        "/batches/{batch_id}/retry", "/batches/{batch_id}/urls", "/batches/{batch_id}/changes",
        "/schedules", "/schedules/{schedule_id}", "/schedules/{schedule_id}/run",
        "/schedules/{schedule_id}/runs", "/templates", "/templates/{template_id}",
        "/openapi.json",
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BATCH_API_KEYS": "", "SCRAPYD_BIND_ADDRESS": "0.0.0.0"}, "refusing to serve"),
        ({"BATCH_API_KEYS": "k1:alice", "SCRAPYD_USERNAME": ""}, "basic auth is not"),
        ({"BATCH_API_KEYS": "k1-without-owner"}, "is not key:owner"),
        ({"BATCH_API_KEYS": "k1:alice:root"}, "is not key:owner or key:owner:admin"),
        ({"BATCH_API_KEYS": "k1:alice", "BATCH_API_DEFAULT_OWNER": "zed"},
         "no key of BATCH_API_KEYS has owner 'zed'"),
    ],
)
def test_unsafe_configurations_refuse_to_start(
    env: dict[str, str], message: str, mongo_uri: str, tmp_path: Any
) -> None:
    home = write_scrapyd_home(tmp_path / "home", 0, {})
    full_env = {**os.environ, "HOME": str(home), "MONGO_URI": mongo_uri,
                "BATCHSCRAPER_HOME": str(home), "SCRAPYD_USERNAME": "u",
                "SCRAPYD_PASSWORD": "p", **env}
    result = subprocess.run(
        [sys.executable, "-m", "batchscraper.cli", "serve"], cwd=REPO, env=full_env,
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
