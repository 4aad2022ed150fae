"""The seed APIs' bodies, as their documents write them, against a real Scrapyd; and the API
side of prompt-only batches, ignore_invalid_urls, appended URLs and synchronous answers.

Only the URLs of the seed bodies are changed (to the local example site); every other key is
as written in ../shared/seeds/. The crawls use the fake OpenAI-compatible server where the
body needs an LLM. Every refused request is checked to have stored nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchscraper.demo.site import ExampleSite, product_expected
from batchscraper.store import BatchStore
from tests.api_fixtures import (  # noqa: F401  (fixtures)
    JOB_SETTINGS,
    Receiver,
    ScrapydServer,
    assert_error,
    assert_matches,
    openapi_fixture,
    receiver_fixture,
    scrapyd_fixture,
    start_scrapyd,
    wait_for,
)
from tests.conftest import assert_counters_match_items
from tests.fakellm import FakeLLM, fake_llm_fixture, fake_llm_server_fixture  # noqa: F401

pytestmark = pytest.mark.slow

FINAL = ("completed", "partial", "failed", "cancelled")


@pytest.fixture(scope="module", name="llm_api")
def llm_api_fixture(
    mongo_uri: str, tmp_path_factory: pytest.TempPathFactory, fake_llm_server: FakeLLM
) -> Iterator[ScrapydServer]:
    """A Scrapyd whose crawls (and so its submit checks) have the fake LLM configured."""
    jobs = {**JOB_SETTINGS, **{k: str(v) for k, v in fake_llm_server.settings().items()}}
    server = start_scrapyd(tmp_path_factory.mktemp("scrapyd-llm"), mongo_uri,
                           api_settings={"batch_api_job_settings": json.dumps(jobs)})
    yield server
    server.stop()


def seed(name: str) -> str:
    return (Path(__file__).resolve().parents[2] / "shared" / "seeds" / name).read_text()


def accepted(server: ScrapydServer, body: dict[str, Any], path: str = "/batches",
             status: int = 202, **kw: Any) -> dict[str, Any]:
    answer = server.call("POST", path, body, **kw)
    assert answer.status == status, answer.body[:2000]
    return dict(answer.json())


def finished(server: ScrapydServer, batch_id: str) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        batch = server.call("GET", f"/batches/{batch_id}?limit=100").json()
        return batch if batch["status"] in FINAL else None

    return dict(wait_for(final, timeout=120, what=f"batch {batch_id} to finish"))


def stored(store: BatchStore) -> tuple[int, int]:
    return store.batches.count_documents({}), store.items.count_documents({})


# -- the seed bodies ------------------------------------------------------------------------


def test_aitronos_body(llm_api: ScrapydServer, openapi: dict, site: ExampleSite,
                       store: BatchStore, fake_llm: FakeLLM) -> None:
    assert '"max_items_per_url": 50,\n      "parallel_jobs": 3' in seed("000_783cdc6757d7f179.txt")
    body = {
        "urls": [site.url(f"/list/{n}") for n in (1, 2, 3)],
        "schema": {"type": "object",
                   "properties": {"title": {"type": "string"}, "content": {"type": "string"}}},
        "options": {"max_items_per_url": 50, "parallel_jobs": 3},
    }
    assert_matches(openapi, "BatchSubmit", body)  # the document describes it
    answer = accepted(llm_api, body)
    assert_matches(openapi, "BatchAccepted", answer)
    assert (answer["total"], len(answer["jobs"])) == (3, 3)
    batch = finished(llm_api, answer["batch_id"])
    assert batch["status"] == "completed", batch["items"]
    for item, n in zip(batch["items"], (1, 2, 3), strict=True):
        titles = [record["title"] for record in item["data"]]
        assert titles == [product_expected(((n - 1) * 10 + i) % 10_000 + 1)["name"]
                          for i in range(10)]
    assert_counters_match_items(store, answer["batch_id"])


def test_runo_body_answers_synchronously(llm_api: ScrapydServer, openapi: dict,
                                         site: ExampleSite, store: BatchStore) -> None:
    assert '"async_mode": false' in seed("001_68c410a62dfb0cd9.txt")
    body = {
        "urls": [site.url("/products/1"), site.url("/products/2"), site.url("/products/3")],
        "schema": [
            {"field": "title", "type": "string", "example": "Example title"},
            {"field": "price", "type": "float", "example": 19.99},
        ],
        "options": {"render_js": "auto", "concurrency": 4, "fail_fast": False,
                    "timeout_ms": 15000},
        "async_mode": False,
    }
    assert_matches(openapi, "BatchSubmit", body)  # the document describes it
    answer = accepted(llm_api, body, status=200)
    assert_matches(openapi, "BatchResults", answer)
    assert answer["status"] == "completed"
    assert [r["url"] for r in answer["results"]] == body["urls"]  # input order
    for result, n in zip(answer["results"], (1, 2, 3), strict=True):
        assert result["status"] == "completed"
        assert result["data"] == {"title": f"Product {n}",
                                  "price": pytest.approx(product_expected(n)["price"])}
    batch = assert_counters_match_items(store, answer["batch_id"])
    assert batch["options"]["timeout_per_url"] == 15.0


def test_spidra_bodies(llm_api: ScrapydServer, openapi: dict, site: ExampleSite,
                       store: BatchStore, fake_llm: FakeLLM) -> None:
    text = seed("002_b5f16249844c1ccb.txt")
    prompt = "Extract the product name, price, and availability"
    assert f'"prompt": "{prompt}",\n      "output": "json"' in text
    urls = [site.url(f"/plain/{n}") for n in (1, 2, 3)]
    spidra = {"urls": urls, "prompt": prompt, "output": "json"}
    assert_matches(openapi, "BatchSubmit", spidra)
    prompt_only = accepted(llm_api, spidra)
    batch = finished(llm_api, prompt_only["batch_id"])
    assert batch["status"] == "completed" and batch["schema"] is None
    for item, n in zip(batch["items"], (1, 2, 3), strict=True):
        assert item["data"] == {"name": f"Plain {n}",
                                "price": pytest.approx(product_expected(n)["price"]),
                                "availability": product_expected(n)["in_stock"]}
        assert item["extraction"]["schema"] is None
    # the structured-output example: a prompt and a schema
    schema = {"type": "object", "required": ["name", "price"], "properties": {
        "name": {"type": "string"}, "price": {"type": "number"},
        "currency": {"type": ["string", "null"]}, "available": {"type": ["boolean", "null"]}}}
    assert '"currency":  { "type": ["string", "null"] }' in text
    structured = accepted(llm_api, {"urls": urls, "prompt": "Extract the product details",
                                    "schema": schema})
    batch = finished(llm_api, structured["batch_id"])
    assert batch["status"] == "completed"
    for item, n in zip(batch["items"], (1, 2, 3), strict=True):
        assert item["data"]["name"] == f"Plain {n}"
        assert item["data"]["available"] is product_expected(n)["in_stock"]
    for batch_id in (prompt_only["batch_id"], structured["batch_id"]):
        assert_counters_match_items(store, batch_id)


@pytest.mark.browser
def test_alterlab_body(llm_api: ScrapydServer, openapi: dict, site: ExampleSite,
                       store: BatchStore, receiver: Receiver) -> None:
    assert '"formats": ["text", "markdown"],\n            "cost_controls": { "max_tier": "3" }' \
        in seed("004_fa3ba8cf1f03b42f.txt")
    body = {
        "urls": [
            {"url": site.url("/products/1")},
            {"url": site.url("/app-shell/2"), "mode": "js"},
            {"url": site.url("/articles/3"), "formats": ["text", "markdown"],
             "cost_controls": {"max_tier": "3"}},
        ],
        "webhook_url": receiver.url,
    }
    assert_matches(openapi, "BatchSubmit", body)
    answer = accepted(llm_api, body)
    assert "secret" in answer["webhook"]
    batch = finished(llm_api, answer["batch_id"])
    first, second, third = batch["items"]
    assert batch["status"] == "completed", batch["items"]
    assert first["data"]["title"].startswith("Product 1") and first["render_mode"] == "fetch"
    assert second["render_mode"] == "headless" and second["data"]["title"]
    assert third["data"]["title"] and third["extraction"]["method"] == "content"
    content = llm_api.call("GET", f"/batches/{answer['batch_id']}/items?include=content")
    kept = [set(item.get("content") or {}) for item in content.json()["items"]]
    assert kept == [{"markdown"}, {"markdown"}, {"text", "markdown"}]
    wait_for(lambda: len(receiver.received) == 1, 30, what="the batch.completed webhook")
    assert json.loads(receiver.received[0][1])["data"]["status"] == "completed"
    assert_counters_match_items(store, answer["batch_id"])


# -- prompt-only, ignore_invalid_urls, appended URLs, wait: the API side --------------------


def test_prompt_only_without_an_llm_is_422(scrapyd: ScrapydServer, openapi: dict,
                                           store: BatchStore) -> None:
    before = stored(store)
    body = {"urls": ["https://shop.example/1", "nope"], "prompt": "the name",
            "options": {"retries": 9}}
    error = assert_error(openapi, scrapyd.call("POST", "/batches", body), 422, "INVALID_URL")
    assert [(d["field"], d["code"]) for d in error["details"]] == [
        ("urls", "INVALID_URL"), ("options", "INVALID_OPTION"), ("prompt", "INVALID_INPUT")]
    alone = {"urls": ["https://shop.example/1"], "prompt": "the name"}
    error = assert_error(openapi, scrapyd.call("POST", "/batches", alone), 422, "INVALID_INPUT")
    assert "a prompt-only batch needs an LLM endpoint" in error["message"]
    assert stored(store) == before


def test_ignore_invalid_urls(llm_api: ScrapydServer, openapi: dict, site: ExampleSite,
                             store: BatchStore) -> None:
    body = {"urls": [site.url("/products/5"), "ftp://x.example/", {"url": 7}],
            "schema": "profile:product", "options": {"ignore_invalid_urls": True}}
    answer = accepted(llm_api, body, headers={"Idempotency-Key": "invalid-1"})
    assert_matches(openapi, "BatchAccepted", answer)
    assert [(e["index"], e["url"]) for e in answer["invalid_urls"]] == [
        (1, "ftp://x.example/"), (2, "7")]
    assert answer["invalid_urls"][0]["reason"] == "only http and https URLs are fetched"
    replay = llm_api.call("POST", "/batches", body, headers={"Idempotency-Key": "invalid-1"})
    assert replay.json()["invalid_urls"] == answer["invalid_urls"]
    batch = finished(llm_api, answer["batch_id"])
    assert batch["status"] == "partial" and batch["failures"] == {"INVALID_URL": 2}
    assert [i["status"] for i in batch["items"]] == ["completed", "failed", "failed"]
    before = stored(store)
    refused = dict(body, options={})
    error = assert_error(openapi, llm_api.call("POST", "/batches", refused), 422, "INVALID_URL")
    assert [d["index"] for d in error["details"]] == [1, 2]
    assert stored(store) == before


def test_append_urls(llm_api: ScrapydServer, openapi: dict, site: ExampleSite,
                     store: BatchStore) -> None:
    first = accepted(llm_api, {"urls": [site.url("/products/6")], "schema": "profile:product"})
    batch_id = first["batch_id"]
    assert finished(llm_api, batch_id)["status"] == "completed"
    path = f"/batches/{batch_id}/urls"
    more = {"urls": [site.url("/products/7"), {"url": site.url("/products/8"),
                                               "formats": ["text"]}]}
    key = {"Idempotency-Key": "more-1"}
    answer = accepted(llm_api, more, path, headers=key)
    assert_matches(openapi, "UrlsAppended", answer)
    assert answer["appended"] == {"first_index": 1, "count": 2} and len(answer["jobs"]) == 1
    assert answer["status"] == "pending" and answer["total"] == 3
    replay = llm_api.call("POST", path, more, headers=key)
    assert (replay.status, replay.headers["Idempotent-Replayed"]) == (202, "true")
    assert replay.json()["appended"] == answer["appended"]
    batch = finished(llm_api, batch_id)
    assert batch["status"] == "completed"
    assert [i["data"]["name"] for i in batch["items"]] == ["Product 6", "Product 7", "Product 8"]
    assert [job["kind"] for job in batch["jobs"]] == ["submit", "append"]
    assert_counters_match_items(store, batch_id)

    before = stored(store)
    for response, status, code in (
        (llm_api.call("POST", path, {"urls": ["ftp://x.example/", "nope"]}), 422,
         "INVALID_URL"),
        (llm_api.call("POST", path, {"urls": []}), 422, "INVALID_URL"),
        (llm_api.call("POST", path, {"urls": ["https://a.example/"], "schema": {}}), 400,
         "INVALID_INPUT"),
        (llm_api.call("POST", path, more, owner="bob"), 403, "FORBIDDEN"),
        (llm_api.call("POST", path, {"urls": [site.url("/products/9")]}, headers=key), 409,
         "IDEMPOTENCY_CONFLICT"),
        (llm_api.call("POST", "/batches/b_" + "0" * 32 + "/urls", more), 404, "NOT_FOUND"),
    ):
        error = assert_error(openapi, response, status, code)
        if code == "INVALID_URL" and error["details"]:
            assert [d["index"] for d in error["details"]] == [0, 1]
    assert stored(store) == before
    cancelled = accepted(llm_api, {"urls": [site.url("/slow?delay=5")],
                                   "schema": "profile:product"})
    llm_api.call("DELETE", f"/batches/{cancelled['batch_id']}")
    before = stored(store)
    assert_error(openapi, llm_api.call("POST", f"/batches/{cancelled['batch_id']}/urls", more),
                 409, "INVALID_STATE")
    assert stored(store) == before


def test_wait_answers_small_batches_synchronously(llm_api: ScrapydServer, openapi: dict,
                                                  site: ExampleSite, store: BatchStore) -> None:
    body = {"urls": [site.url("/products/12"), site.url("/status/404")],
            "schema": "profile:product", "options": {"retries": 0}}
    answer = accepted(llm_api, body, "/batches?wait=60", status=200)
    assert_matches(openapi, "BatchResults", answer)
    assert answer["status"] == "partial"
    assert [(r["index"], r["status"]) for r in answer["results"]] == [
        (0, "completed"), (1, "failed")]
    assert answer["results"][1]["error"]["code"] == "HTTP_ERROR"
    # not done within the wait: the usual 202, and the batch keeps running
    slow = {"urls": [site.url("/slow?delay=4")], "schema": "profile:product"}
    late = accepted(llm_api, slow, "/batches?wait=1")
    assert late["status"] in ("pending", "running") and "results" not in late
    assert finished(llm_api, late["batch_id"])["status"] == "completed"
    before = stored(store)
    too_many = {"urls": [site.url(f"/products/{n}") for n in range(1, 52)],
                "schema": "profile:product"}
    error = assert_error(openapi, llm_api.call("POST", "/batches?wait=10", too_many), 413,
                         "TOO_LARGE")
    assert "BATCH_SYNC_MAX_URLS" in error["message"]
    assert_error(openapi, llm_api.call("POST", "/batches?wait=61", body), 400, "INVALID_INPUT")
    assert_error(openapi, llm_api.call("POST", "/batches?wait=soon", body), 400,
                 "INVALID_INPUT")
    assert stored(store) == before
    # async_mode: false of a batch too large for a synchronous answer: the usual 202
    assert "results" not in accepted(llm_api, {**too_many, "async_mode": False})
    # the Python client: submit(wait=) and append()
    client = llm_api.client()
    done = client.submit([site.url("/products/14")], "profile:product", wait=30)
    assert done["status"] == "completed" and done["results"][0]["data"]["name"] == "Product 14"
    more = client.append(done["batch_id"], [site.url("/products/15")])
    assert more["appended"] == {"first_index": 1, "count": 1}
    assert finished(llm_api, done["batch_id"])["items"][1]["data"]["name"] == "Product 15"


def test_retention_options(llm_api: ScrapydServer, openapi: dict, site: ExampleSite,
                           store: BatchStore) -> None:
    body = {"urls": [site.url("/products/13")], "schema": "profile:product",
            "options": {"expires_in": "2h", "content_retention_days": 1,
                        "store_content": False}}
    answer = accepted(llm_api, body)
    assert_matches(openapi, "BatchAccepted", answer)
    created = dt.datetime.fromisoformat(answer["created_at"])
    assert dt.datetime.fromisoformat(answer["expires_at"]) - created == dt.timedelta(hours=2)
    batch = finished(llm_api, answer["batch_id"])
    assert batch["options"]["expires_in"] == 7200 and batch["status"] == "completed"
    before = stored(store)
    bad = {**body, "options": {"expires_in": 5, "store_content": False,
                               "formats": ["json", "html"]}}
    error = assert_error(openapi, llm_api.call("POST", "/batches", bad), 422, "INVALID_OPTION")
    assert [d["option"] for d in error["details"]] == ["expires_in"]
    kept = {**body, "options": {"store_content": False, "formats": ["json", "html"]}}
    error = assert_error(openapi, llm_api.call("POST", "/batches", kept), 422, "INVALID_OPTION")
    assert [d["option"] for d in error["details"]] == ["formats"]
    assert stored(store) == before
