"""The ``batchscraper`` API commands against a real Scrapyd: what goes to stdout and stderr,
exit codes, and the inputs the command line accepts like ``scrapy crawl`` does."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from batchscraper.demo.site import ExampleSite
from batchscraper.inputs.profiles import profile_schema
from batchscraper.store import BatchStore
from tests.api_fixtures import (  # noqa: F401  (fixtures)
    KEYS,
    REPO,
    ScrapydServer,
    assert_error,
    openapi_fixture,
    scrapyd_fixture,
)

pytestmark = pytest.mark.slow


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
