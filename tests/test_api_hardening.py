"""Issue 20, findings 3, 4 and 8, against a real Scrapyd.

- Request bodies are admitted from their headers: no key, no basic auth or
  a declared length over the limit is answered at once, before the body is
  read; a body without a length is cut off at the limit. Measured on the
  server's temporary files, not its log.
- ``X-Forwarded-Prefix`` (the documented reverse-proxy setup) works, and a
  job Scrapyd cannot queue leaves a stored batch the reconciler starts, never
  a duplicate.
- Stopping Scrapyd (SIGTERM, or Ctrl-C to its process group) stops its
  crawls gracefully: no more fetches, no live lease, the batch resumes on
  the next start.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import signal
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from batchscraper.demo.site import ExampleSite
from batchscraper.store import BatchStore
from batchscraper.store.mongo import connect, database_name
from tests.api_fixtures import (  # noqa: F401  (fixtures)
    KEYS,
    SCRAPYD_USER,
    ScrapydServer,
    assert_error,
    assert_matches,
    openapi_fixture,
    scrapyd_fixture,
    start_scrapyd,
    wait_for,
)

pytestmark = pytest.mark.slow

MB = 1024 * 1024
MAX_BODY = 1_000_000  # tests.api_fixtures.API_SETTINGS
HUGE = 2_000_000_000  # the length a hostile upload declares
BLOCK = b"x" * 65536
STREAM_SECONDS = 5.0  # how long a hostile upload keeps writing (BATCH_API_LINGER_SECONDS: 2)...
STREAM_BYTES = 64 * MB  # ...at most this much (Twisted without the gate took 1.8 GB in 3 s)
ANSWER_WITHIN = 1.0  # seconds from the end of the headers to the refusal
FIELDS = [{"field": "name", "type": "string"}]
SHUTDOWN_GRACE = 15  # BATCH_API_SHUTDOWN_GRACE_SECONDS of the shutdown tests
QUICK_RECONCILER = {"batch_reconcile_interval": "0.5", "batch_reconcile_grace": "1"}
SLOW_PAGES = [f"/hostile/slow-products/{n}" for n in range(1, 31)]  # the example site's


# -- finding 3: bodies admitted before they are read --------------------------------


@dataclass
class Upload:
    """What happened to a body streamed at the server."""

    head: bytes = b""  # the status line and headers of the answer, if any
    body: bytes = b""
    answered_after: float | None = None  # seconds from the end of our headers
    sent: int = 0  # body bytes the server took before it stopped reading
    temp_growth: int = 0  # most bytes the server's temporary files grew by meanwhile
    closed: bool = False  # the server closed the connection
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def status(self) -> int | None:
        return int(self.head.split(b" ", 2)[1]) if self.head else None

    def header(self, name: str) -> str | None:
        for line in self.head.decode("latin-1").split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None

    def json(self) -> Any:
        return json.loads(self.body)


def temp_bytes(pid: int) -> int:
    """Bytes in the regular files process ``pid`` holds open that are temporary (or deleted)."""
    total = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
            info = fd.stat()
        except OSError:
            continue  # closed meanwhile
        if target.endswith("(deleted)") or target.startswith(("/tmp", "/var/tmp")):
            total += info.st_size if fd.is_file() else 0
    return total


def stream(
    server: ScrapydServer, path: str, headers: dict[str, str], *, chunked: bool = False,
    length: int = HUGE,
) -> Upload:
    """POST ``path`` and keep writing body blocks for STREAM_SECONDS (or until refused)."""
    port = int(server.url.rsplit(":", 1)[1])
    framing = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(length)}
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}",
             "Content-Type: application/json", *(f"{k}: {v}" for k, v in {**framing,
                                                                          **headers}.items())]
    block = b"%x\r\n%s\r\n" % (len(BLOCK), BLOCK) if chunked else BLOCK
    upload = Upload()
    baseline = temp_bytes(server.process.pid)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(0.2)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    start = time.monotonic()
    deadline = start + STREAM_SECONDS

    def send() -> None:
        while time.monotonic() < deadline and upload.sent < STREAM_BYTES:
            if upload.done.is_set():
                return
            try:
                upload.sent += sock.send(block)
            except TimeoutError:
                continue  # the server is not reading: TCP holds us back
            except OSError:
                upload.closed = True
                return

    sender = threading.Thread(target=send)
    sender.start()
    received = b""
    try:
        while time.monotonic() < deadline:
            upload.temp_growth = max(upload.temp_growth,
                                     temp_bytes(server.process.pid) - baseline)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                upload.closed = True
                break
            if not data:
                upload.closed = True
                break
            if not received:
                upload.answered_after = time.monotonic() - start
            received += data
    finally:
        upload.done.set()
        sender.join()
        sock.close()
    upload.head, _, upload.body = received.partition(b"\r\n\r\n")
    return upload


def assert_refused_at_once(upload: Upload, status: int) -> None:
    assert upload.status == status, (upload.head, upload.body[:300])
    assert upload.answered_after is not None and upload.answered_after < ANSWER_WITHIN
    assert upload.closed, "the server kept the connection open for the rest of the body"
    assert upload.temp_growth < MB, f"temporary files grew by {upload.temp_growth} bytes"
    assert upload.header("Connection") == "close"


def test_a_huge_body_without_a_key_is_refused_before_it_is_read(
    scrapyd: ScrapydServer, openapi: dict
) -> None:
    upload = stream(scrapyd, "/batches", {})
    assert_refused_at_once(upload, 401)
    assert upload.json()["error"]["code"] == "UNAUTHORIZED"
    assert upload.header("WWW-Authenticate") == 'Bearer realm="batchscraper"'
    # the same answer a small body without a key gets from the resource itself
    small = scrapyd.call("POST", "/batches", {"urls": []}, owner=None)
    assert_error(openapi, small, 401, "UNAUTHORIZED")
    assert small.json() == upload.json()

    wrong_key = stream(scrapyd, "/batches/b_0/retry", {"X-API-Key": "not-a-key"})
    assert_refused_at_once(wrong_key, 401)


def test_a_huge_body_with_a_key_gets_413_before_it_is_read(
    scrapyd: ScrapydServer, openapi: dict
) -> None:
    upload = stream(scrapyd, "/batches", {"X-API-Key": KEYS["alice"]})
    assert_refused_at_once(upload, 413)
    assert upload.json()["error"]["code"] == "TOO_LARGE"


def test_a_body_without_a_length_is_cut_off_at_the_limit(scrapyd: ScrapydServer) -> None:
    upload = stream(scrapyd, "/batches", {"X-API-Key": KEYS["alice"]}, chunked=True)
    assert upload.status == 413, (upload.head, upload.body[:300])
    assert upload.json()["error"]["code"] == "TOO_LARGE"
    assert upload.closed
    assert upload.sent > MAX_BODY  # it was read up to the limit...
    assert upload.temp_growth < MAX_BODY + MB  # ...and no further


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.parametrize("path", ["/ui/", "/openapi.json"])
def test_what_needs_no_key_takes_no_body(
    scrapyd: ScrapydServer, openapi: dict, path: str, chunked: bool
) -> None:
    """Without this, a keyless body up to the limit was spooled to disk before the 405."""
    upload = stream(scrapyd, path, {}, chunked=chunked, length=MAX_BODY)
    assert_refused_at_once(upload, 413)
    assert upload.temp_growth < MAX_BODY // 10, f"temporary files grew by {upload.temp_growth}"
    assert_matches(openapi, "Error", upload.json())
    assert upload.json()["error"] == {
        "code": "TOO_LARGE", "message": f"/{path.strip('/')} takes no request body",
        "details": None,
    }


def test_scrapyd_endpoints_refuse_a_huge_body_without_basic_auth(
    scrapyd: ScrapydServer,
) -> None:
    upload = stream(scrapyd, "/addversion.json", {})
    assert_refused_at_once(upload, 401)
    # what Scrapyd's own guard answers a request without a body
    plain = scrapyd.call("GET", "/addversion.json", owner=None)
    assert (upload.status, upload.body) == (plain.status, plain.body) == (401, b"Unauthorized")
    assert upload.header("WWW-Authenticate") == plain.headers["WWW-Authenticate"]

    token = base64.b64encode(f"{SCRAPYD_USER}:wrong".encode()).decode()
    wrong = stream(scrapyd, "/schedule.json", {"Authorization": f"Basic {token}"})
    assert_refused_at_once(wrong, 401)


def test_small_bodies_are_read_as_before(scrapyd: ScrapydServer, openapi: dict) -> None:
    """A small body with a key reaches the resource, with or without a length."""
    bad = scrapyd.call("POST", "/batches", raw=b'{"urls": "nope"', owner="alice")
    assert_error(openapi, bad, 400, "INVALID_INPUT")
    port = int(scrapyd.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        body = b'{"urls": []'
        sock.sendall(b"POST /batches HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\nX-API-Key: " + KEYS["alice"].encode() + b"\r\n\r\n"
                     + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert b'"INVALID_INPUT"' in answer
    cancelled = scrapyd.call("POST", "/cancel.json", raw=b"project=batchscraper&job=none",
                             headers={"Content-Type": "application/x-www-form-urlencoded"},
                             owner=None, basic_auth=True)
    assert cancelled.status == 200 and cancelled.json()["status"] == "ok", cancelled.body


# -- finding 4: the reverse-proxy prefix, and a job Scrapyd cannot queue -----------


def test_forwarded_prefix_is_in_links(
    scrapyd: ScrapydServer, openapi: dict, site: ExampleSite
) -> None:
    proxy = {"X-Forwarded-Prefix": "/proxy/"}
    answer = scrapyd.call("POST", "/batches", {"urls": [site.url("/products/1")],
                                               "fields": FIELDS}, headers=proxy)
    assert answer.status == 202, answer.body[:500]
    batch_id = answer.json()["batch_id"]
    assert answer.headers["Location"] == f"/proxy/batches/{batch_id}"
    assert answer.json()["links"]["self"] == f"/proxy/batches/{batch_id}"
    assert answer.json()["jobs"]
    listed = scrapyd.call("GET", "/batches?limit=1", headers=proxy)
    assert listed.status == 200
    assert listed.json()["batches"][0]["links"]["self"].startswith("/proxy/batches/")
    detail = scrapyd.call("GET", f"/batches/{batch_id}", headers=proxy).json()
    assert detail["links"]["self"] == f"/proxy/batches/{batch_id}"

    port = int(scrapyd.url.rsplit(":", 1)[1])
    for prefix, location in (("/proxy", "/proxy/ui/"), ("//evil.example", "/ui/")):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(f"GET /ui HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                         f"X-Forwarded-Prefix: {prefix}\r\n\r\n".encode())
            head = b""
            while chunk := sock.recv(65536):
                head += chunk
        assert head.startswith(b"HTTP/1.1 301 "), head[:300]
        assert f"\r\nLocation: {location}\r\n".lower().encode() in head.lower()


@pytest.fixture(scope="module")
def own_uri(mongo_uri: str) -> Iterator[str]:
    """A database of this module's own Scrapyds: their quick reconcilers touch only its batches."""
    uri = mongo_uri.replace(f"/{database_name(mongo_uri)}?", "/api_hardening?")
    yield uri
    client = connect(uri)
    client.drop_database("api_hardening")
    client.close()


@pytest.fixture()
def own_store(own_uri: str) -> Iterator[BatchStore]:
    store = BatchStore(connect(own_uri), "api_hardening")
    yield store
    store.client.close()


def test_a_job_scrapyd_cannot_queue_leaves_a_batch_the_reconciler_starts(
    own_uri: str, own_store: BatchStore, openapi: dict, site: ExampleSite, tmp_path: Path
) -> None:
    store = own_store
    server = start_scrapyd(tmp_path / "scrapyd", own_uri, api_settings=QUICK_RECONCILER)
    key = {"Idempotency-Key": f"locked-{uuid.uuid4().hex}"}
    body = {"urls": [site.url("/products/2")], "fields": FIELDS}
    # another process holds the write lock of Scrapyd's job queue: its insert fails
    queue = sqlite3.connect(tmp_path / "scrapyd" / "dbs" / "batchscraper.db",
                            isolation_level=None, timeout=30)
    queue.execute("BEGIN IMMEDIATE")
    try:
        refused = server.call("POST", "/batches", body, headers=key)
    finally:
        queue.execute("ROLLBACK")
        queue.close()
    try:
        check_resumed_once(server, store, openapi, refused, body, key)
    finally:
        server.stop()


def check_resumed_once(
    server: ScrapydServer,
    store: BatchStore,
    openapi: dict,
    refused: Any,
    body: dict[str, Any],
    key: dict[str, str],
) -> None:
    """The 503 names a stored batch; the same key answers with it; the reconciler runs it."""
    error = assert_error(openapi, refused, 503, "JOB_NOT_SCHEDULED")
    batch_id = error["details"]["batch_id"]
    stored = store.get_batch(batch_id)
    assert [job["kind"] for job in stored["jobs"]] == ["submit"]  # noted, so never "no job"

    again = server.call("POST", "/batches", body, headers=key)
    assert again.status == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["batch_id"] == batch_id
    assert store.batches.count_documents({"idempotency_key": key["Idempotency-Key"]}) == 1

    def finished() -> dict[str, Any] | None:
        batch = store.get_batch(batch_id)
        return batch if batch["status"] == "completed" else None

    batch = wait_for(finished, timeout=90, what=f"the reconciler to run {batch_id}")
    assert [job["kind"] for job in batch["jobs"]] == ["submit", "reconcile"]


# -- finding 8: stopping Scrapyd stops its crawls ------------------------------------


def start_slow_batch(
    mongo_uri: str, home: Path, site: ExampleSite, store: BatchStore
) -> tuple[ScrapydServer, str, int]:
    """Scrapyd running a batch of slow pages: (server, batch id, crawl pid) once it fetches."""
    server = start_scrapyd(home, mongo_uri, api_settings={
        "batch_api_shutdown_grace_seconds": str(SHUTDOWN_GRACE), **QUICK_RECONCILER})
    urls = [site.url(path) + "?delay=0.5" for path in SLOW_PAGES]
    options = {"concurrency": 2, "retries": 0, "render_js": "never"}
    answer = server.call("POST", "/batches", {"urls": urls, "fields": FIELDS, "options": options})
    assert answer.status == 202, answer.body[:500]
    batch_id, job_id = answer.json()["batch_id"], answer.json()["jobs"][0]

    def crawl_pid() -> int | None:
        running = [job for job in server.listjobs()["running"] if job["id"] == job_id]
        return int(running[0]["pid"]) if running else None

    pid = wait_for(crawl_pid, timeout=60, what="the crawl process")
    wait_for(lambda: store.get_batch(batch_id)["counters"]["completed"] >= 3, timeout=60,
             what="the crawl to fetch")
    return server, batch_id, pid


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def assert_stopped_gracefully(
    server: ScrapydServer, crawl: int, batch_id: str, site: ExampleSite, store: BatchStore
) -> None:
    """Scrapyd and its crawl end within the grace time; the batch keeps no live lease."""
    server.process.wait(timeout=SHUTDOWN_GRACE + 10)
    wait_for(lambda: gone(crawl), timeout=5, what=f"crawl {crawl} to end")
    fetched = sum(site.hits(path) for path in SLOW_PAGES)
    time.sleep(2)
    assert sum(site.hits(path) for path in SLOW_PAGES) == fetched, "fetches after the stop"
    now = dt.datetime.now(dt.UTC)
    live = store.items.count_documents(
        {"batch_id": batch_id, "status": {"$in": ["leased", "running"]},
         "lease.until": {"$gt": now}})
    assert live == 0, "the crawl left live leases: it was not closed gracefully"
    batch = store.get_batch(batch_id)
    assert batch["status"] == "running" and batch["counters"]["pending"] > 0


def test_sigterm_stops_scrapyd_and_its_crawls_and_the_batch_resumes(
    own_uri: str, tmp_path: Path, site: ExampleSite, own_store: BatchStore
) -> None:
    home, store = tmp_path / "scrapyd", own_store
    server, batch_id, crawl = start_slow_batch(own_uri, home, site, store)
    try:
        os.kill(server.process.pid, signal.SIGTERM)  # `kill $(cat .batchscraper/scrapyd.pid)`
        assert_stopped_gracefully(server, crawl, batch_id, site, store)
    finally:
        server.stop()
    restarted = start_scrapyd(home, own_uri, api_settings=QUICK_RECONCILER)
    try:
        wait_for(lambda: store.get_batch(batch_id)["status"] == "completed", timeout=120,
                 what=f"the resumed batch {batch_id}")
    finally:
        restarted.stop()
    assert store.get_batch(batch_id)["counters"]["completed"] == len(SLOW_PAGES)


def test_ctrl_c_stops_scrapyd_and_its_crawls_gracefully(
    own_uri: str, tmp_path: Path, site: ExampleSite, own_store: BatchStore
) -> None:
    """Ctrl-C signals the whole process group: Scrapyd must not signal its crawls twice."""
    store = own_store
    server, batch_id, crawl = start_slow_batch(own_uri, tmp_path / "scrapyd", site, store)
    try:
        os.killpg(server.process.pid, signal.SIGINT)
        assert_stopped_gracefully(server, crawl, batch_id, site, store)
    finally:
        server.stop()
