"""No secret in logs, item records, API answers or error messages.

A real run uses all of them: an API key for the requests, a webhook signing
secret, ``OPENAI_API_KEY`` for the LLM (which fails some requests), and
Scrapyd's basic-auth password. Then every log Scrapyd and its crawl wrote,
every item record and the API's answers are searched for them.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from scrapy.settings import Settings

from batchscraper.exceptions import LLMError
from batchscraper.llm.client import ChatRequest, OpenAIChatClient
from batchscraper.llm.config import LLMConfig
from batchscraper.store import BatchStore
from batchscraper.webhooks import new_secret
from tests.api_fixtures import KEYS, SCRAPYD_PASSWORD, Receiver, free_port
from tests.fakellm import FakeLLM
from tests.faults.conftest import FAST_JOB_SETTINGS, start_fault_scrapyd, wait_until

OPENAI_KEY = "sk-test-" + secrets.token_hex(16)
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "sku": {"type": "string"},
                   "price": {"type": "number"}},
    "required": ["name", "sku", "price"],
}


class EchoKeyHandler(BaseHTTPRequestHandler):
    """An endpoint that refuses the key and quotes it back, as some proxies do."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        key = self.headers.get("Authorization", "").removeprefix("Bearer ")
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def echo_llm() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoKeyHandler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_llm_error_messages_do_not_quote_the_api_key(echo_llm: str) -> None:
    settings = Settings()
    settings.setmodule("batchscraper.settings")
    settings.setdict({"OPENAI_BASE_URL": echo_llm, "OPENAI_API_KEY": OPENAI_KEY,
                      "BATCH_LLM_RETRIES": 0, "BATCH_LLM_RESPONSE_FORMAT": "json_object"})
    client = OpenAIChatClient(LLMConfig.from_settings(settings))
    request = ChatRequest(messages=({"role": "user", "content": "hi"},), schema={})
    with pytest.raises(LLMError) as failure:
        asyncio.run(client.complete(request))
    assert "Incorrect API key provided" in failure.value.message
    assert OPENAI_KEY not in failure.value.message
    assert OPENAI_KEY not in str(failure.value.to_dict())


def _texts(home: Path) -> dict[str, str]:
    """Every log file Scrapyd and its crawls wrote under ``home``."""
    return {str(path): path.read_text(errors="replace") for path in home.rglob("*")
            if path.is_file() and (path.suffix in (".log", ".out") or "logs" in path.parts)}


@pytest.mark.slow
def test_no_secret_in_logs_records_or_answers(
    own_store: BatchStore, site: Any, tmp_path: Path
) -> None:
    webhook_secret = new_secret()
    fake = FakeLLM().start()
    receiver = Receiver(free_port()).start()
    # heuristics off: the plain pages go to the LLM, so the key is used
    job_settings = {**FAST_JOB_SETTINGS, "BATCH_LLM_RETRY_BACKOFF_BASE": "0.05",
                    "BATCH_LLM_CACHE_ENABLED": "False", "BATCH_HEURISTICS_ENABLED": "False"}
    home = tmp_path / "scrapyd"
    server = start_fault_scrapyd(
        home, own_store.uri, keys=True,  # type: ignore[attr-defined]
        env={"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": OPENAI_KEY,
             "BATCH_LLM_MODEL": "fake-model"},
        batch_api_job_settings=json.dumps(job_settings),
    )
    try:
        fake.fail_next("500", times=4)  # LLM errors on the way
        body = {"urls": [site.url(f"/plain/{n}") for n in range(1, 5)], "schema": SCHEMA,
                "options": {"render_js": "never", "concurrency": 1},
                "webhook": {"url": receiver.url, "secret": webhook_secret}}
        answer = server.call("POST", "/batches", body)
        assert answer.status == 202, answer.body
        batch_id = answer.json()["batch_id"]
        assert server.call("GET", "/batches", owner=None).status == 401  # a refused caller too
        wait_until(
            lambda: (own_store.get_batch(batch_id).get("webhook") or {}).get("status")
            == "delivered", 120, f"the webhook; log:\n{server.log_tail()}",
        )
        answers = [server.call("GET", path).body.decode()
                   for path in (f"/batches/{batch_id}", f"/batches/{batch_id}/items",
                                f"/batches/{batch_id}/items?format=ndjson", "/batches")]
    finally:
        server.stop()
        receiver.stop()
        fake.stop()
    items = list(own_store.iter_items(batch_id))
    assert sum(item["llm_calls"] for item in items) > 0  # the key was used
    assert fake.calls > 4  # four of the calls failed with 500 and were retried
    assert len(receiver.received) == 1
    texts = {
        **_texts(home),
        "items": json.dumps(items, default=str),
        "answers": "\n".join(answers),
    }
    assert any("batch" in name and name.endswith(".log") for name in texts)  # crawl logs
    for secret in (OPENAI_KEY, webhook_secret, KEYS["alice"], SCRAPYD_PASSWORD):
        leaks = [name for name, text in texts.items() if secret in text]
        assert not leaks, f"{secret[:6]}... found in {leaks}"
