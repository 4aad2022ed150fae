"""What a new user meets first: the example site on 127.0.0.1, exit codes a script can use,
re-running a batch by id, re-extraction that cannot work, and the demo's own command line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from scrapy.crawler import Crawler

import batchscraper.settings as project_settings
from batchscraper.demo.site import ExampleSite
from batchscraper.downloadermiddlewares.ssrf import AddressPolicy
from batchscraper.exceptions import BatchStateError, FetchBlockedError
from batchscraper.inputs import parse_batch
from batchscraper.reextract import reextract_spec
from batchscraper.spiders.batch import BatchSpider
from batchscraper.store import BatchStore
from tests.conftest import REPO, batch_id_from

SCHEMA = json.dumps({"type": "object", "properties": {"name": {"type": "string"}},
                     "required": ["name"]})
BY_STATUS = {"BATCH_CRAWL_EXIT_BY_STATUS": True}


def project(**overrides: Any) -> dict[str, Any]:
    names = [name for name in dir(project_settings) if name.isupper()]
    base = {name: getattr(project_settings, name) for name in names if name != "TWISTED_REACTOR"}
    return {**base, **overrides}


@pytest.mark.parametrize(("url", "network"), [
    ("http://127.0.0.1:8000/products/1", "127.0.0.0/8"),
    ("http://10.1.2.3/", "10.0.0.0/8"),
    ("http://[::1]/", "::1/128"),
    ("http://192.0.2.7/", "192.0.2.7/32"),
])
def test_a_refused_address_says_how_to_allow_it(url: str, network: str):
    with pytest.raises(FetchBlockedError) as info:
        AddressPolicy().check_url(url)
    message = info.value.message
    assert f"-s BATCH_ALLOWED_NETWORKS={network} for scrapy crawl" in message
    assert f'batch_api_job_settings = {{"BATCH_ALLOWED_NETWORKS": "{network}"}}' in message


def test_exit_code_follows_the_batch_status(crawl, site: ExampleSite, store: BatchStore):
    completed = crawl(urls=site.url("/products/31"), schema=SCHEMA, settings=BY_STATUS)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert store.get_batch(batch_id_from(completed))["status"] == "completed"

    partial = crawl(urls=f"{site.url('/products/32')},{site.url('/status/404')}", schema=SCHEMA,
                    retries="0", settings=BY_STATUS)
    assert partial.returncode == 1
    assert store.get_batch(batch_id_from(partial))["status"] == "partial"

    # the first crawl anyone tries: the example site without its network allowed
    blocked = {**BY_STATUS, "BATCH_ALLOWED_NETWORKS": ""}
    failed = crawl(urls=site.url("/products/33"), schema=SCHEMA, settings=blocked)
    assert failed.returncode == 1
    [item] = store.iter_items(batch_id_from(failed))
    assert item["error"]["code"] == "FETCH_BLOCKED"
    assert "-s BATCH_ALLOWED_NETWORKS=127.0.0.0/8" in item["error"]["message"]

    scrapy_usual = crawl(urls=site.url("/products/33"), schema=SCHEMA,
                         settings={**blocked, "BATCH_CRAWL_EXIT_BY_STATUS": False})
    assert scrapy_usual.returncode == 0
    assert store.get_batch(batch_id_from(scrapy_usual))["status"] == "failed"


def test_resuming_a_finished_batch_points_to_rerun_and_retry(
    crawl, site: ExampleSite, store: BatchStore
):
    first = crawl(urls=site.url("/products/34"), schema=SCHEMA)
    batch_id = batch_id_from(first)
    before = store.get_batch(batch_id)
    again = crawl(batch_id=batch_id)
    assert again.returncode == 2
    [line] = [line for line in again.stderr.splitlines() if line.strip()]
    assert line.startswith(f"scrapy crawl batch: error: INVALID_STATE: batch {batch_id} is"
                           " already completed")
    assert f"--rerun-of {batch_id}" in line and f"batchscraper retry {batch_id}" in line
    assert store.get_batch(batch_id) == before


def test_a_resumed_batch_runs_with_the_run_time_options_given(
    mongo_uri: str, site: ExampleSite, store: BatchStore
):
    batch = store.create_batch(parse_batch(site.url("/products/35"), SCHEMA))
    crawler = Crawler(BatchSpider, project(MONGO_URI=mongo_uri))  # settings not frozen yet
    spider = BatchSpider.from_crawler(crawler, batch_id=batch["_id"], concurrency="3",
                                      timeout_per_url="7")
    assert (spider.run.options.concurrency, spider.run.options.timeout_per_url) == (3, 7.0)
    assert crawler.settings.getint("CONCURRENT_REQUESTS") == 3
    assert crawler.settings.getfloat("DOWNLOAD_TIMEOUT") == 7.0
    assert store.get_batch(batch["_id"])["options"]["concurrency"] == 8  # this run only


def test_reextracting_text_without_an_llm_is_refused_at_submit(
    crawl, site: ExampleSite, store: BatchStore
):
    source = store.create_batch(parse_batch(site.url("/products/36"), SCHEMA,
                                            options={"formats": ["json", "markdown"]}))
    with pytest.raises(BatchStateError, match="kept only markdown, which only an LLM"):
        reextract_spec(store, source["_id"], SCHEMA, llm_configured=False)
    assert reextract_spec(store, source["_id"], SCHEMA, llm_configured=True).urls
    before = store.batches.count_documents({})
    refused = crawl(reextract_from=source["_id"], schema=SCHEMA,
                    settings={"BATCH_LLM_ENABLED": False})
    assert refused.returncode == 2
    assert "INVALID_STATE: batch" in refused.stderr and "no LLM is configured" in refused.stderr
    assert store.batches.count_documents({}) == before


@pytest.mark.slow
def test_the_demo_prints_a_command_that_runs_as_pasted(
    mongo_uri: str, tmp_path: Path, store: BatchStore
):
    with ExampleSite() as probe:
        port = int(probe.base_url.rsplit(":", 1)[1])  # a free port, released again
    env = {**os.environ, "MONGO_URI": mongo_uri, "BATCHSCRAPER_HOME": str(tmp_path),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    demo = subprocess.run(
        [sys.executable, "-m", "batchscraper.cli", "demo", "--pages", "2", "--port", str(port)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    lines = demo.stdout.splitlines()
    hint = next(n for n, line in enumerate(lines) if line.startswith("try it yourself"))
    assert f"--port {port}" in lines[hint]
    command = lines[hint + 1]
    assert "BATCH_ALLOWED_NETWORKS=127.0.0.0/8" in command
    with ExampleSite(port=port):
        pasted = subprocess.run(["bash", "-c", command], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=180)
    assert pasted.returncode == 1, pasted.stderr[-3000:]  # partial: the demo's failing URLs
    batch = store.get_batch(batch_id_from(pasted))
    assert batch["counters"]["completed"] == 3  # two products and the plain page
    assert batch["options"]["concurrency"] == 16
    codes = {item["error"]["code"] for item in store.iter_items(batch["_id"]) if item["error"]}
    assert "FETCH_BLOCKED" not in codes and codes
    assert re.search(r"\$ scrapy crawl batch .*'options=\{", demo.stdout)
