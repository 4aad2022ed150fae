"""``/templates`` and ``batchscraper templates`` against a real Scrapyd whose crawls learn
templates of the template shop (``batchscraper/demo/shop.py``) from the fake LLM, on the
embedded MongoDB-wire server. Answers are checked against the served /openapi.json; every
refused request is checked to have removed nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from batchscraper.demo.shop import TemplateShop
from batchscraper.store import BatchStore
from batchscraper.templates.signature import page_shape, page_tree
from batchscraper.templates.store import TemplateStore
from tests.api_fixtures import (
    JOB_SETTINGS,
    KEYS,
    REPO,
    ScrapydServer,
    assert_error,
    assert_matches,
    start_scrapyd,
    wait_for,
)
from tests.fakellm import FakeLLM, fake_llm_fixture, fake_llm_server_fixture  # noqa: F401
from tests.test_templates import ASKED, SCHEMA

pytestmark = pytest.mark.slow

FINAL = ("completed", "partial", "failed", "cancelled")
# one page in the pipeline at a time: learning takes the first 3 + 2 pages, then no LLM
LEARNING = {"BATCH_HEURISTICS_ENABLED": True, "BATCH_TEMPLATE_AUDIT_EVERY": 10,
            "SCRAPER_SLOT_MAX_ACTIVE_SIZE": 1}


@pytest.fixture(scope="module", name="shop")
def shop_fixture() -> Iterator[TemplateShop]:
    with TemplateShop() as running:
        yield running


@pytest.fixture(scope="module", name="scrapyd")
def learning_scrapyd_fixture(
    mongo_uri: str, tmp_path_factory: pytest.TempPathFactory, fake_llm_server: FakeLLM
) -> Iterator[ScrapydServer]:
    """A Scrapyd whose crawls have the fake LLM and learn templates page by page."""
    settings = fake_llm_server.settings(**LEARNING)
    jobs = {**JOB_SETTINGS, **{k: str(v) for k, v in settings.items()}}
    server = start_scrapyd(tmp_path_factory.mktemp("scrapyd-templates"), mongo_uri,
                           api_settings={"batch_api_job_settings": json.dumps(jobs)})
    yield server
    server.stop()


@pytest.fixture(scope="module", name="openapi")
def learning_openapi_fixture(scrapyd: ScrapydServer) -> dict[str, Any]:
    answer = scrapyd.call("GET", "/openapi.json", owner=None)
    assert answer.status == 200
    return dict(answer.json())


def crawl_shop(scrapyd: ScrapydServer, shop: TemplateShop, pages: range,
               owner: str = "alice") -> dict[str, Any]:
    """A batch of the shop's product pages, run to its end; its final state."""
    body = {"urls": [shop.url(f"/item/{n}") for n in pages], "schema": SCHEMA,
            "options": {"concurrency": 1, "render_js": "never", "retries": 0}}
    answer = scrapyd.call("POST", "/batches", body, owner=owner)
    assert answer.status == 202, answer.body[:2000]
    path = f"/batches/{answer.json()['batch_id']}?limit=0"

    def final() -> dict[str, Any] | None:
        state = scrapyd.call("GET", path, owner=owner).json()
        return state if state["status"] in FINAL else None

    return dict(wait_for(final, timeout=120, what="the shop batch to end"))


def host_of(shop: TemplateShop) -> str:
    return urlsplit(shop.url("/")).netloc


def cli(scrapyd: ScrapydServer, *args: str, owner: str = "alice") -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "batchscraper.cli", "templates", *args, "--url",
               scrapyd.url, "--api-key", KEYS[owner]]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60,
                          check=False)


def test_templates_a_batch_learned_listed_shown_and_deleted(
    scrapyd: ScrapydServer, openapi: dict, shop: TemplateShop, store: BatchStore,
    fake_llm: FakeLLM,
) -> None:
    fake_llm.labelled = True
    state = crawl_shop(scrapyd, shop, range(1, 21))
    assert_matches(openapi, "BatchState", state)
    assert state["status"] == "completed"
    # the batch's own counts per template: what its page shows
    [(template_id, used)] = state["templates"].items()
    items = list(store.iter_items(state["batch_id"]))
    served = [i for i in items if i["extraction"]["method"] == "template"]
    audited = [i for i in items if "template_audit" in i["extraction"]]
    assert served and used["learned"] == 1
    assert used["pages"] == len(served) == state["counters"]["template_pages"]
    assert used.get("audits", 0) == len(audited)

    host = host_of(shop)
    listed = scrapyd.call("GET", f"/templates?host={host}").json()
    assert_matches(openapi, "TemplateList", listed)
    [summary] = listed["templates"]
    assert (summary["template_id"], summary["status"], summary["version"]) == (
        template_id, "active", 1)
    assert summary["fields"] == sorted(ASKED)
    assert summary["hits"] == len(served) + len(audited)  # an audited page is a hit too
    assert (summary["misses"], summary["hit_rate"]) == (0, 1.0)
    assert summary["batch_id"] == state["batch_id"]
    assert summary["links"]["self"] == f"/templates/{template_id}"
    by_batch = scrapyd.call("GET", f"/templates?batch_id={state['batch_id']}").json()
    assert [t["template_id"] for t in by_batch["templates"]] == [template_id]
    retired = scrapyd.call("GET", f"/templates?host={host}&status=retired").json()
    assert retired["templates"] == [] and retired["pagination"]["total"] == 0

    shown = scrapyd.call("GET", f"/templates/{template_id}")
    assert shown.status == 200
    detail = shown.json()
    assert_matches(openapi, "Template", detail)
    assert detail["rules"]["colour"]["xpath"] == (
        "//th[normalize-space()='Colour']/following-sibling::td[1]")
    assert len(detail["samples"]) >= 3 and all(
        set(s) == {"url", "answer"} and s["url"].startswith(shop.url("/item/"))
        for s in detail["samples"])

    # another owner sees none of it and cannot remove it
    theirs = scrapyd.call("GET", f"/templates?host={host}", owner="bob").json()["templates"]
    assert template_id not in {t["template_id"] for t in theirs}
    assert_error(openapi, scrapyd.call("GET", f"/templates/{template_id}", owner="bob"),
                 403, "FORBIDDEN")
    assert_error(openapi, scrapyd.call("DELETE", f"/templates/{template_id}", owner="bob"),
                 403, "FORBIDDEN")
    assert_error(openapi, scrapyd.call("GET", f"/templates?batch_id={state['batch_id']}",
                                       owner="bob"), 403, "FORBIDDEN")

    # the command line, as a user runs it
    listing = cli(scrapyd, "list", "--host", host)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.splitlines() == [
        f"{template_id}  active    {host} v1  hits={summary['hits']} misses=0 hit_rate=100.0%"
        f"  audits={summary['audits']} accuracy={'-' if not audited else '100.0%'}"
        "  fields=colour,material,rating",
        "page 1/1, 1 templates"]
    show = cli(scrapyd, "show", template_id)
    assert show.returncode == 0 and json.loads(show.stdout)["rules"] == detail["rules"]
    removed = cli(scrapyd, "rm", template_id)
    assert (removed.returncode, removed.stdout) == (0, f"{template_id} deleted\n")
    assert TemplateStore(store.db).get(template_id) is None
    assert_error(openapi, scrapyd.call("GET", f"/templates/{template_id}"), 404, "NOT_FOUND")
    assert_error(openapi, scrapyd.call("DELETE", f"/templates/{template_id}"), 404, "NOT_FOUND")
    gone = cli(scrapyd, "show", template_id)
    assert gone.returncode == 2 and gone.stdout == ""
    assert gone.stderr.count("\n") == 1 and "NOT_FOUND" in gone.stderr


@pytest.fixture(name="seeded")
def seeded_fixture(store: BatchStore, shop: TemplateShop) -> Iterator[str]:
    """A learning template of alice's, written by the template store as a crawl writes it."""
    templates = TemplateStore(store.db)
    shape = page_shape(page_tree(shop.page("/item/1") or ""))
    key = {"owner": "alice", "host": "seeded.test", "schema_fp": "0" * 16}
    doc = templates.create(key, shape, "b_" + "0" * 32, 0.75)
    yield doc["_id"]
    templates.delete(doc["_id"])


def test_bad_template_requests_are_refused_and_nothing_is_removed(
    scrapyd: ScrapydServer, openapi: dict, shop: TemplateShop, store: BatchStore, seeded: str,
    fake_llm: FakeLLM,
) -> None:
    fake_llm.labelled = True
    bobs = crawl_shop(scrapyd, shop, range(1, 2), owner="bob")["batch_id"]
    templates = store.db["templates"]
    before = templates.count_documents({})
    for query, code in (("page=0", "INVALID_INPUT"), ("limit=1000", "INVALID_INPUT"),
                        ("limit=x", "INVALID_INPUT"), ("status=done", "INVALID_INPUT"),
                        ("host=" + "h" * 300, "INVALID_INPUT")):
        error = assert_error(openapi, scrapyd.call("GET", f"/templates?{query}"), 400, code)
        assert query.split("=")[0] in error["message"], error
    assert_error(openapi, scrapyd.call("GET", f"/templates?batch_id={bobs}"), 403, "FORBIDDEN")
    assert_error(openapi, scrapyd.call("GET", "/templates?batch_id=b_nope"), 404, "NOT_FOUND")
    assert_error(openapi, scrapyd.call("GET", f"/templates?batch_id=b_{'f' * 32}"), 404,
                 "NOT_FOUND")
    for path in ("/templates/tpl_nope", f"/templates/tpl_{'0' * 16}", "/templates/%24where",
                 f"/templates/{seeded}/rules"):
        assert_error(openapi, scrapyd.call("GET", path), 404, "NOT_FOUND")
        assert_error(openapi, scrapyd.call("DELETE", path), 404, "NOT_FOUND")
    assert_error(openapi, scrapyd.call("GET", f"/templates/{seeded}", owner="bob"), 403,
                 "FORBIDDEN")
    assert_error(openapi, scrapyd.call("DELETE", f"/templates/{seeded}", owner="bob"), 403,
                 "FORBIDDEN")
    for method, path in (("GET", "/templates"), ("GET", f"/templates/{seeded}"),
                         ("DELETE", f"/templates/{seeded}")):
        assert_error(openapi, scrapyd.call(method, path, owner=None), 401, "UNAUTHORIZED")
    for method, path in (("POST", "/templates"), ("PATCH", f"/templates/{seeded}"),
                         ("POST", f"/templates/{seeded}")):
        answer = scrapyd.call(method, path, {})
        assert_error(openapi, answer, 405, "METHOD_NOT_ALLOWED")
    listing_only = scrapyd.call("DELETE", "/templates")
    assert_error(openapi, listing_only, 405, "METHOD_NOT_ALLOWED")
    assert listing_only.headers["Allow"] == "GET"
    refused = cli(scrapyd, "rm", seeded, owner="bob")
    assert refused.returncode == 2 and "FORBIDDEN" in refused.stderr
    assert cli(scrapyd, "list", "--status", "done").returncode == 2  # argparse: a usage error
    assert templates.count_documents({}) == before
    assert scrapyd.call("GET", f"/templates/{seeded}").json()["status"] == "learning"
