"""The project deployed as an egg with scrapyd-deploy, run by a Scrapyd outside the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from batchscraper.demo.site import ExampleSite, product_expected
from batchscraper.store import BatchStore
from tests.api_fixtures import (
    REPO,
    ScrapydServer,
    assert_error,
    free_port,
    wait_for,
    write_scrapyd_home,
)

pytestmark = pytest.mark.slow

# Scrapyd with the batch API but no [settings] project: only a deployed egg provides it
DEPLOY_CONF = """\
[scrapyd]
application = batchscraper.api.app.application

[services]
batches = batchscraper.api.resources.Batches
openapi.json = batchscraper.api.resources.OpenApi
"""

RUNNER_IMPORTS = """
from scrapyd.runner import project_environment
with project_environment("batchscraper"):
    import batchscraper.spiders.batch, pipelines.store
    print(batchscraper.spiders.batch.__file__, pipelines.store.__file__)
"""


def test_scrapyd_deploy_egg_then_api_batch(
    mongo_uri: str, tmp_path: Path, site: ExampleSite, store: BatchStore
) -> None:
    port = free_port()
    home = write_scrapyd_home(tmp_path / "home", port, {
        "batch_api_job_settings": '{"BATCH_ALLOWED_NETWORKS": "127.0.0.0/8"}',
    })
    (home / ".scrapy.cfg").write_text(
        f"[deploy:local]\nurl = http://127.0.0.1:{port}/\nproject = batchscraper\n"
    )
    workdir = tmp_path / "scrapyd"  # no scrapy.cfg here or above: the project is not importable
    workdir.mkdir()
    (workdir / "scrapyd.conf").write_text(DEPLOY_CONF)
    env = {**os.environ, "HOME": str(home), "MONGO_URI": mongo_uri, "BATCH_API_KEYS": "",
           "SCRAPYD_USERNAME": "", "SCRAPYD_PASSWORD": ""}
    with (tmp_path / "scrapyd.out").open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "scrapyd", "--pidfile="], cwd=workdir, env=env,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    server = ScrapydServer(f"http://127.0.0.1:{port}", process, tmp_path / "scrapyd.out")
    try:
        wait_for(server.answers, timeout=60, what=f"Scrapyd:\n{server.log_tail()}")
        body = {"urls": [site.url("/products/21"), site.url("/products/22")],
                "fields": [{"field": "name", "type": "string"}, {"field": "sku", "type": "string"}]}
        before = store.batches.count_documents({})
        refused = server.call("POST", "/batches", body, owner=None)
        openapi = server.call("GET", "/openapi.json", owner=None).json()
        assert_error(openapi, refused, 503, "SERVICE_UNAVAILABLE")
        assert store.batches.count_documents({}) == before

        deploy = subprocess.run(
            [sys.executable, "-m", "scrapyd_client.deploy", "local", "-v", "r1"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        )
        assert deploy.returncode == 0, deploy.stderr
        assert '"spiders": 1' in deploy.stdout, deploy.stdout
        versions = server.call("GET", "/listversions.json?project=batchscraper", owner=None)
        assert versions.json()["versions"] == ["r1"]
        loaded = subprocess.run(  # what Scrapyd's runner imports, from Scrapyd's directory
            [sys.executable, "-W", "ignore", "-c", RUNNER_IMPORTS], cwd=workdir, env=env,
            capture_output=True, text=True, timeout=60,
        )
        assert loaded.stdout.split() == [
            str(home / "eggs" / "batchscraper" / "r1.egg" / name)
            for name in ("batchscraper/spiders/batch.py", "pipelines/store.py")
        ], loaded.stderr

        answer = server.call("POST", "/batches", body, owner=None)
        assert answer.status == 202, answer.body
        batch_id = answer.json()["batch_id"]
        wait_for(lambda: store.get_batch(batch_id)["status"] == "completed", timeout=90,
                 what=f"the batch to complete:\n{server.log_tail()}")
        records = [item["data"] for item in store.iter_items(batch_id)]
        assert records == [
            {"name": product_expected(n)["name"], "sku": product_expected(n)["sku"]}
            for n in (21, 22)
        ]

        def finished() -> set[str]:
            jobs = server.call("GET", "/listjobs.json?project=batchscraper", owner=None).json()
            return {job["id"] for job in jobs["finished"]}

        wait_for(lambda: answer.json()["jobs"][0] in finished(), what="the job to end")
    finally:
        server.stop()
