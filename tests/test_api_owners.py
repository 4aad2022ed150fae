"""Owners with API keys on, against a real Scrapyd: batches stored without an owner belong to
``BATCH_API_DEFAULT_OWNER``; an admin key (``key:owner:admin``) sees and manages every owner's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from batchscraper.inputs import parse_batch
from batchscraper.store import BatchStore
from tests.api_fixtures import (
    KEYS,
    Answer,
    ScrapydServer,
    assert_error,
    assert_matches,
    start_scrapyd,
)

pytestmark = pytest.mark.slow

ROOT_KEY = "key-root-admin-7d8e9f"
FIELDS = [{"field": "name", "type": "string"}]


@pytest.fixture(scope="module", name="scrapyd")
def owners_scrapyd(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[ScrapydServer]:
    """Keys of alice (the default owner), bob and root (an admin, its own owner)."""
    keys = f"{KEYS['alice']}:alice,{KEYS['bob']}:bob,{ROOT_KEY}:root:admin"
    server = start_scrapyd(tmp_path_factory.mktemp("owners"), mongo_uri,
                           extra_env={"BATCH_API_KEYS": keys, "BATCH_API_DEFAULT_OWNER": "alice"})
    yield server
    server.stop()


@pytest.fixture(scope="module", name="openapi")
def owners_openapi(scrapyd: ScrapydServer) -> dict[str, Any]:
    return dict(scrapyd.call("GET", "/openapi.json", owner=None).json())


def as_root(scrapyd: ScrapydServer, method: str, path: str, body: Any = None) -> Answer:
    return scrapyd.call(method, path, body, owner=None, headers={"X-API-Key": ROOT_KEY})


def make_batch(store: BatchStore, word: str, owner: str | None) -> str:
    spec = parse_batch([f"https://{owner or 'nobody'}.example/p/1"], FIELDS)
    return str(store.create_batch(spec, owner=owner, extra={"name": f"{word} {owner}"})["_id"])


def listed(answer: Answer) -> dict[str, str | None]:
    assert answer.status == 200, answer.body[:500]
    return {batch["batch_id"]: batch["owner"] for batch in answer.json()["batches"]}


def test_batches_without_an_owner_belong_to_the_default_owner(
    scrapyd: ScrapydServer, store: BatchStore, openapi: dict
) -> None:
    word = uuid.uuid4().hex[:10]
    unowned, alices = make_batch(store, word, None), make_batch(store, word, "alice")
    assert listed(scrapyd.call("GET", f"/batches?q={word}")) == {unowned: None, alices: "alice"}
    assert scrapyd.call("GET", f"/batches/{unowned}").status == 200
    appended = scrapyd.call("POST", f"/batches/{unowned}/urls", {"urls": ["https://n.example/2"]})
    assert appended.status == 202, appended.body
    assert scrapyd.call("DELETE", f"/batches/{unowned}").json()["status"] == "cancelled"

    # bob: not his
    assert listed(scrapyd.call("GET", f"/batches?q={word}", owner="bob")) == {}
    for method, path in (("GET", ""), ("GET", "/items"), ("DELETE", ""), ("POST", "/retry")):
        answer = scrapyd.call(method, f"/batches/{alices}{path}", owner="bob")
        assert_error(openapi, answer, 403, "FORBIDDEN")
    rerun = scrapyd.call("POST", "/batches", {"rerun_of": unowned}, owner="bob")
    assert_error(openapi, rerun, 403, "FORBIDDEN")
    assert store.get_batch(alices)["status"] == "pending"
    assert store.batches.count_documents({"name": {"$regex": word}}) == 2  # nothing made


def test_an_admin_key_sees_and_manages_every_owners_batches(
    scrapyd: ScrapydServer, store: BatchStore, openapi: dict
) -> None:
    word = uuid.uuid4().hex[:10]
    bobs, unowned, alices = (make_batch(store, word, owner) for owner in ("bob", None, "alice"))
    answer = as_root(scrapyd, "GET", f"/batches?q={word}")
    assert listed(answer) == {bobs: "bob", unowned: None, alices: "alice"}
    for batch in answer.json()["batches"]:
        assert_matches(openapi, "BatchSummary", batch)
    assert listed(as_root(scrapyd, "GET", f"/batches?q={word}&owner=bob")) == {bobs: "bob"}
    # the default owner's: with the batches stored without an owner
    assert set(listed(as_root(scrapyd, "GET", f"/batches?q={word}&owner=alice"))) == {
        unowned, alices}
    assert listed(scrapyd.call("GET", f"/batches?q={word}&owner=bob", owner="bob")) == {
        bobs: "bob"}

    assert as_root(scrapyd, "GET", f"/batches/{bobs}").json()["owner"] == "bob"
    assert as_root(scrapyd, "GET", f"/batches/{bobs}/items").status == 200
    assert as_root(scrapyd, "DELETE", f"/batches/{bobs}").status == 200
    assert store.get_batch(bobs)["status"] == "cancelled"
    rerun = as_root(scrapyd, "POST", "/batches", {"rerun_of": bobs})
    assert rerun.status == 202, rerun.body
    assert store.get_batch(rerun.json()["batch_id"])["owner"] == "root"  # the admin's own
    as_root(scrapyd, "DELETE", f"/batches/{rerun.json()['batch_id']}")

    # another key may name only its own owner
    before = store.batches.count_documents({})
    for owner in ("alice", "root", "nobody"):
        answer = scrapyd.call("GET", f"/batches?owner={owner}", owner="bob")
        assert_error(openapi, answer, 403, "ADMIN_REQUIRED")
    assert store.batches.count_documents({}) == before


def test_an_admin_key_manages_every_owners_schedules(
    scrapyd: ScrapydServer, store: BatchStore, openapi: dict
) -> None:
    body = {"name": f"owners {uuid.uuid4().hex[:8]}", "cron": "0 3 * * *",
            "batch": {"urls": ["https://bob.example/p/1"], "fields": FIELDS}}
    created = scrapyd.call("POST", "/schedules", body, owner="bob")
    assert created.status == 201, created.body
    schedule_id = created.json()["schedule_id"]
    assert_error(openapi, scrapyd.call("GET", f"/schedules/{schedule_id}"), 403, "FORBIDDEN")
    listed_ids = [doc["schedule_id"] for doc in as_root(scrapyd, "GET",
                                                        "/schedules?limit=50").json()["schedules"]]
    assert schedule_id in listed_ids
    assert as_root(scrapyd, "PATCH", f"/schedules/{schedule_id}", {"enabled": False}).status == 200
    assert as_root(scrapyd, "DELETE", f"/schedules/{schedule_id}").status == 200
    assert scrapyd.call("GET", f"/schedules/{schedule_id}", owner="bob").status == 404


def test_an_unowned_schedule_is_the_default_owners(
    scrapyd: ScrapydServer, store: BatchStore
) -> None:
    body = {"name": f"open {uuid.uuid4().hex[:8]}", "cron": "0 3 * * *",
            "batch": {"urls": ["https://open.example/p/1"], "fields": FIELDS}}
    created = as_root(scrapyd, "POST", "/schedules", body)
    schedule_id = created.json()["schedule_id"]
    store.db["schedules"].update_one({"_id": schedule_id}, {"$set": {"owner": None}})
    assert scrapyd.call("GET", f"/schedules/{schedule_id}").status == 200  # alice's
    assert scrapyd.call("GET", f"/schedules/{schedule_id}", owner="bob").status == 403
    run = scrapyd.call("POST", f"/schedules/{schedule_id}/run")
    assert run.status == 202, run.body
    assert store.get_batch(run.json()["batch_id"])["owner"] == "alice"
    scrapyd.call("DELETE", f"/batches/{run.json()['batch_id']}")
    scrapyd.call("DELETE", f"/schedules/{schedule_id}")
