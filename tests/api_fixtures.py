"""Fixtures for the HTTP API tests: a real Scrapyd (``batchscraper serve``) and a webhook receiver.

Scrapyd runs as a subprocess from the repository (so ``scrapy.cfg`` and
``scrapyd.conf`` are found) on a free port. Its directories, port and the
API's test settings come from a ``~/.scrapyd.conf`` in a temporary HOME:
Scrapyd reads that file after ``./scrapyd.conf``, and so do the crawl
processes it starts.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from batchscraper.client import BatchClient

REPO = Path(__file__).resolve().parents[1]
KEYS = {"alice": "key-alice-4f1d2a", "bob": "key-bob-9c3e7b", "carol": "key-carol-1a2b3c",
        "dave": "key-dave-5e6f7a"}
SCRAPYD_USER, SCRAPYD_PASSWORD = "admin", "scrapyd-test-secret"
START_TIMEOUT = 60
JOB_SETTINGS = {
    "BATCH_ALLOWED_NETWORKS": "127.0.0.0/8",
    "BATCH_CANCEL_CHECK_INTERVAL": "0.5",
    "BATCH_PROGRESS_INTERVAL": "0",
}
API_SETTINGS = {
    "batch_api_max_body_bytes": "1000000",
    "batch_api_job_settings": json.dumps(JOB_SETTINGS),
    "batch_webhook_poll_interval": "0.2",
    "batch_webhook_retry_base": "0.5",
    "batch_webhook_retry_max": "2",
    "batch_webhook_timeout": "3",
    "batch_allowed_networks": "127.0.0.0/8",  # webhook receivers on 127.0.0.1 (SSRF guard)
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Answer:
    """A raw HTTP answer."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ScrapydServer:
    """A running ``batchscraper serve``."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, owner: str = "alice") -> BatchClient:
        return BatchClient(self.url, KEYS[owner], timeout=30)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        owner: str | None = "alice",
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        basic_auth: bool = False,
    ) -> Answer:
        """One HTTP request; error statuses are returned, not raised."""
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if owner is not None:
            all_headers["X-API-Key"] = KEYS[owner]
        if basic_auth:
            token = base64.b64encode(f"{SCRAPYD_USER}:{SCRAPYD_PASSWORD}".encode()).decode()
            all_headers["Authorization"] = f"Basic {token}"
        request = urllib.request.Request(
            self.url + path, data=data, headers=all_headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return Answer(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return Answer(exc.code, dict(exc.headers), exc.read())

    def listjobs(self) -> dict[str, Any]:
        answer = self.call("GET", "/listjobs.json?project=batchscraper", owner=None,
                           basic_auth=True)
        assert answer.status == 200, answer.body
        return answer.json()

    def answers(self) -> bool:
        port = int(self.url.rsplit(":", 1)[1])
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return False
        return self.call("GET", "/openapi.json", owner=None).status == 200

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """Stop Scrapyd and the crawl processes it started (its own process group)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # crawls that outlived Scrapyd


def write_scrapyd_home(
    path: Path, port: int, api_settings: dict[str, str], max_proc: int | None = None
) -> Path:
    """A HOME whose ~/.scrapyd.conf gives Scrapyd its own port, folders and API settings."""
    path.mkdir(parents=True, exist_ok=True)
    lines = ["[scrapyd]", f"http_port = {port}", "poll_interval = 0.5"]
    if max_proc:
        lines.append(f"max_proc = {max_proc}")
    lines += [f"{name}_dir = {path / name}" for name in ("logs", "dbs", "eggs")]
    lines += ["", "[batchscraper]", *(f"{k} = {v}" for k, v in api_settings.items())]
    (path / ".scrapyd.conf").write_text("\n".join(lines) + "\n")
    return path


def start_scrapyd(
    home: Path,
    mongo_uri: str,
    *,
    keys: bool = True,
    extra_env: dict[str, str] | None = None,
    api_settings: dict[str, str] | None = None,
    max_proc: int | None = None,
    wait: bool = True,
) -> ScrapydServer:
    """``batchscraper serve`` from the repository, on a free port; waits until it answers.

    ``max_proc`` caps Scrapyd's crawl processes. Started again on the same ``home``
    (a restart), it appends to the same log.
    """
    port = free_port()
    write_scrapyd_home(home, port, {**API_SETTINGS, **(api_settings or {})}, max_proc)
    env = {
        **os.environ,
        "HOME": str(home),
        "MONGO_URI": mongo_uri,
        "BATCHSCRAPER_HOME": str(home / "batchscraper"),
        "BATCH_API_KEYS": ",".join(f"{k}:{o}" for o, k in KEYS.items()) if keys else "",
        "SCRAPYD_USERNAME": SCRAPYD_USER if keys else "",
        "SCRAPYD_PASSWORD": SCRAPYD_PASSWORD if keys else "",
        **(extra_env or {}),
    }
    log = home / "scrapyd.out"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "batchscraper.cli", "serve"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    server = ScrapydServer(f"http://127.0.0.1:{port}", process, log)
    if wait:
        deadline = time.monotonic() + START_TIMEOUT
        while not server.answers():
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise AssertionError(f"Scrapyd did not start:\n{server.log_tail()}")
            time.sleep(0.2)
    return server


def wait_for(condition: Any, timeout: float = 60, interval: float = 0.25, what: str = "") -> Any:
    """Poll ``condition()`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


@pytest.fixture(scope="session", name="scrapyd")
def scrapyd_fixture(
    mongo_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ScrapydServer]:
    """The session's Scrapyd with the batch API, API keys and basic auth on."""
    server = start_scrapyd(tmp_path_factory.mktemp("scrapyd"), mongo_uri)
    yield server
    server.stop()


# -- OpenAPI ------------------------------------------------------------------------


@pytest.fixture(scope="session", name="openapi")
def openapi_fixture(scrapyd: ScrapydServer) -> dict[str, Any]:
    answer = scrapyd.call("GET", "/openapi.json", owner=None)
    assert answer.status == 200
    return answer.json()


def assert_matches(spec: dict[str, Any], schema_name: str, body: Any) -> None:
    """Validate ``body`` against ``#/components/schemas/<schema_name>`` of the served document."""
    registry = Registry().with_resource(
        "urn:openapi", Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    validator = Draft202012Validator(
        {"$ref": f"urn:openapi#/components/schemas/{schema_name}"}, registry=registry
    )
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"{schema_name}: {[f'{list(e.path)}: {e.message}' for e in errors][:5]}"


def assert_error(spec: dict[str, Any], answer: Answer, status: int, code: str) -> dict:
    """The answer is ``status`` with ``{"error": {"code": code, ...}}``, as the spec says."""
    assert answer.status == status, (answer.status, answer.body[:500])
    body = answer.json()
    assert_matches(spec, "Error", body)
    assert body["error"]["code"] == code, body
    return dict(body["error"])


# -- webhook receiver ------------------------------------------------------------------


@dataclass
class Receiver:
    """A local webhook endpoint that records what it gets and answers ``status``.

    ``length_header=False`` answers like the plainest hand-written receiver: a body and
    no Content-Length, ended by closing the connection.
    """

    port: int
    status: int = 204
    length_header: bool = True
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append((dict(self.headers), body))
                self.send_response(receiver.status)
                if receiver.length_header:
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.end_headers()
                    self.wfile.write(b"ok")
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture(name="receiver")
def receiver_fixture() -> Iterator[Receiver]:
    running = Receiver(free_port()).start()
    yield running
    running.stop()
