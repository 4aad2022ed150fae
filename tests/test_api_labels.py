"""Named batches: ``name`` and ``tags`` on submit (API and CLI), shown in the batch list with
the URL count, domains and field names, and found by the list's search (``q``)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import pytest

from batchscraper.store import BatchStore
from tests.api_fixtures import (  # noqa: F401  (fixtures)
    KEYS,
    REPO,
    ScrapydServer,
    assert_error,
    assert_matches,
    openapi_fixture,
    scrapyd_fixture,
)

pytestmark = pytest.mark.slow

SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string"},
    "offers": {"type": "object", "properties": {"price": {"type": "number"},
                                                "currency": {"type": "string"}}},
}}
# unreachable on purpose: the batches are cancelled at once, nothing is fetched
URLS = [*(f"https://a.example/p/{n}" for n in range(3)), "https://b.example/x"]


def submit(scrapyd: ScrapydServer, **body: Any) -> dict[str, Any]:
    answer = scrapyd.call("POST", "/batches", {"urls": URLS, "schema": SCHEMA, **body},
                          owner="dave")
    assert answer.status == 202, answer.body[:500]
    batch = answer.json()
    scrapyd.call("DELETE", f"/batches/{batch['batch_id']}", owner="dave")
    return dict(batch)


def listed(scrapyd: ScrapydServer, q: str) -> list[dict[str, Any]]:
    answer = scrapyd.call("GET", f"/batches?limit=50&q={q}", owner="dave")
    assert answer.status == 200, answer.body[:500]
    return list(answer.json()["batches"])


def test_names_and_tags_are_listed_and_searched(scrapyd: ScrapydServer, openapi: dict) -> None:
    word = uuid.uuid4().hex[:8]
    named = submit(scrapyd, name=f"Spring prices {word}", tags=["shop-a", f"w-{word}", "shop-a"])
    other = submit(scrapyd, tags=[f"w-{word}"])
    assert_matches(openapi, "BatchAccepted", named)
    assert (named["name"], named["tags"]) == (f"Spring prices {word}", ["shop-a", f"w-{word}"])
    assert named["overview"] == {
        "domains": [{"domain": "a.example", "urls": 3}, {"domain": "b.example", "urls": 1}],
        "domain_count": 2, "fields": ["name", "offers.price", "offers.currency"],
    }
    both = listed(scrapyd, f"w-{word}")
    assert [batch["batch_id"] for batch in both] == [other["batch_id"], named["batch_id"]]
    assert_matches(openapi, "BatchList", {"batches": both, "pagination": {
        "page": 1, "limit": 50, "total": 2, "total_pages": 1}})
    # every word must match, in the name, tags, domains or field names, in any case
    assert [b["batch_id"] for b in listed(scrapyd, f"SPRING+{word}")] == [named["batch_id"]]
    assert [b["batch_id"] for b in listed(scrapyd, f"{word}+offers.price+b.example")] == [
        other["batch_id"], named["batch_id"]]
    assert listed(scrapyd, f"{word}+nowhere") == []
    assert scrapyd.call("GET", f"/batches?q=w-{word}", owner="alice").json()["batches"] == []
    too_long = scrapyd.call("GET", "/batches?q=" + "x" * 201, owner="dave")
    assert "q:" in assert_error(openapi, too_long, 400, "INVALID_INPUT")["message"]


def test_bad_names_and_tags_list_every_problem_and_store_nothing(
    scrapyd: ScrapydServer, openapi: dict, store: BatchStore
) -> None:
    before = store.batches.count_documents({})
    answer = scrapyd.call("POST", "/batches", {
        "urls": URLS, "schema": SCHEMA, "name": "x" * 201, "tags": ["ok", "", 7, "y" * 51]},
        owner="dave")
    error = assert_error(openapi, answer, 400, "INVALID_INPUT")
    assert [problem["field"] for problem in error["details"]] == [
        "name", "tags[1]", "tags[2]", "tags[3]"]
    answer = scrapyd.call("POST", "/batches", {"urls": URLS, "schema": SCHEMA,
                                               "tags": "one"}, owner="dave")
    assert assert_error(openapi, answer, 400, "INVALID_INPUT")["details"] == [
        {"field": "tags", "message": "a list of up to 20 texts"}]
    assert store.batches.count_documents({}) == before


def test_submit_name_and_tags_from_the_cli(scrapyd: ScrapydServer, store: BatchStore) -> None:
    command = [sys.executable, "-m", "batchscraper.cli", "submit", "--url", scrapyd.url,
               "--api-key", KEYS["dave"], "--urls", ",".join(URLS), "--schema",
               json.dumps(SCHEMA), "--name", "From the CLI", "--tag", "cli", "--tag", "nightly"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    batch_id = json.loads(result.stdout[: result.stdout.index("\n}") + 2])["batch_id"]
    scrapyd.call("DELETE", f"/batches/{batch_id}", owner="dave")
    stored = store.get_batch(batch_id)
    assert (stored["name"], stored["tags"]) == ("From the CLI", ["cli", "nightly"])
