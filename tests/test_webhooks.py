"""Signed webhooks: the Standard Webhooks vector, the outbox written once, real deliveries."""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from batchscraper.api.delivery import WebhookAnswer
from batchscraper.client import verify_webhook
from batchscraper.demo.site import ExampleSite
from batchscraper.exceptions import WebhookVerificationError
from batchscraper.inputs import parse_batch
from batchscraper.store import BatchStore
from batchscraper.store.mongo import connect, database_name
from batchscraper.store.outbox import OUTBOX
from batchscraper.webhooks import new_secret, sign, verify
from tests.api_fixtures import (  # noqa: F401  (fixtures)
    Receiver,
    ScrapydServer,
    assert_matches,
    free_port,
    openapi_fixture,
    receiver_fixture,
    scrapyd_fixture,
    start_scrapyd,
    wait_for,
)

# https://github.com/standard-webhooks/standard-webhooks test vector
KAT_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
KAT_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
KAT_TIMESTAMP = 1614265330
KAT_BODY = b'{"test": 2432232314}'
KAT_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
FIELDS = [{"field": "name", "type": "string"}]


def test_known_answer_vector() -> None:
    assert sign(KAT_SECRET, KAT_ID, KAT_TIMESTAMP, KAT_BODY) == KAT_SIGNATURE
    headers = {
        "Webhook-Id": KAT_ID,
        "Webhook-Timestamp": str(KAT_TIMESTAMP),
        "Webhook-Signature": f"v1,bm90IHRoaXMgb25l {KAT_SIGNATURE}",
    }
    assert verify(KAT_SECRET, headers, KAT_BODY, now=KAT_TIMESTAMP + 10) == {"test": 2432232314}
    # the body as text, as some web frameworks hand it over
    text = KAT_BODY.decode()
    assert verify(KAT_SECRET, headers, text, now=KAT_TIMESTAMP + 10) == {"test": 2432232314}


@pytest.mark.parametrize(
    ("secret", "change", "now"),
    [
        (KAT_SECRET, {}, KAT_TIMESTAMP + 301),  # too old
        (KAT_SECRET, {"body": b'{"test": 1}'}, KAT_TIMESTAMP),  # tampered body
        (KAT_SECRET, {"webhook-id": "msg_other"}, KAT_TIMESTAMP),  # another message's signature
        (new_secret(), {}, KAT_TIMESTAMP),  # wrong secret
        (KAT_SECRET, {"webhook-signature": None}, KAT_TIMESTAMP),  # unsigned
        ("not-a-secret", {}, KAT_TIMESTAMP),
    ],
)
def test_verification_rejects(secret: str, change: dict[str, Any], now: int) -> None:
    headers: dict[str, Any] = {
        "webhook-id": KAT_ID, "webhook-timestamp": str(KAT_TIMESTAMP),
        "webhook-signature": KAT_SIGNATURE,
    }
    body = change.pop("body", KAT_BODY)
    headers.update(change)
    headers = {key: value for key, value in headers.items() if value is not None}
    with pytest.raises(WebhookVerificationError):
        verify(secret, headers, body, now=now)


def _finish(store: BatchStore, batch_id: str, index: int, status: str) -> None:
    claimed = store.claim(batch_id, "test-worker", range(index, index + 1), 60)
    assert claimed
    error = {"code": "HTTP_ERROR", "message": "503", "retryable": True}
    record = {"batch_id": batch_id, "index": index, "url": claimed[0]["url"], "status": status,
              "error": error if status == "failed" else None,
              "data": {"name": "x"} if status == "completed" else None}
    assert store.finish_items([record]) == [True]


@pytest.mark.slow
def test_outbox_gets_one_event_per_run_to_a_final_status(store: BatchStore) -> None:
    spec = parse_batch(["https://example.com/1", "https://example.com/2"], FIELDS)
    webhook = {"url": "https://hooks.example/x", "secret": new_secret()}
    batch_id = store.create_batch(spec, extra={"webhook": webhook})["_id"]
    plain = store.create_batch(spec)["_id"]
    events = store.db[OUTBOX]

    assert store.finalize_batch(batch_id) is None  # items still pending: nothing final
    _finish(store, batch_id, 0, "failed")
    _finish(store, batch_id, 1, "failed")
    assert store.finalize_batch(batch_id) == "failed"
    assert store.finalize_batch(batch_id) == "failed"
    first = list(events.find({"batch_id": batch_id}))
    assert [e["_id"] for e in first] == [f"msg_{batch_id}_1"]

    assert store.retry_failed(batch_id, only_retryable=True) == 2
    assert store.get_batch(batch_id)["counters"]["failed"] == 0
    _finish(store, batch_id, 0, "completed")
    _finish(store, batch_id, 1, "completed")
    assert store.finalize_batch(batch_id) == "completed"
    with pytest.raises(Exception, match="already finished"):
        store.cancel_batch(batch_id)
    bodies = [e["body"] for e in events.find({"batch_id": batch_id}).sort("_id", 1)]
    assert len(bodies) == 2 and '"status":"failed"' in bodies[0]
    assert '"status":"completed"' in bodies[1]

    store.cancel_batch(plain)
    store.cancel_batch(plain)
    assert events.count_documents({"batch_id": plain}) == 0


def _delivered(server: ScrapydServer, batch_id: str, owner: str | None) -> Any:
    batch = server.call("GET", f"/batches/{batch_id}", owner=owner).json()
    return batch if batch["webhook"]["status"] == "delivered" else None


@pytest.mark.slow
def test_batch_completed_delivered_once_and_verifies(
    scrapyd: ScrapydServer, openapi: dict, receiver: Receiver, site: ExampleSite
) -> None:
    secret = new_secret()
    body = {"urls": [site.url("/products/1"), site.url("/products/2")], "fields": FIELDS,
            "webhook": {"url": receiver.url, "secret": secret}}
    answer = scrapyd.call("POST", "/batches", body)
    assert answer.status == 202 and "secret" not in answer.json()["webhook"]
    batch_id = answer.json()["batch_id"]

    batch = wait_for(lambda: _delivered(scrapyd, batch_id, "alice"), what="the webhook")
    assert len(receiver.received) == 1
    headers, raw = receiver.received[0]
    payload = verify_webhook(secret, headers, raw)
    assert_matches(openapi, "BatchCompletedEvent", payload)
    assert payload["data"]["batch_id"] == batch_id
    assert payload["data"]["status"] == batch["status"] == "completed"
    assert payload["data"]["counters"]["completed"] == 2
    assert {k.lower(): v for k, v in headers.items()}["webhook-id"] == f"msg_{batch_id}_1"
    assert [d["ok"] for d in batch["webhook"]["deliveries"]] == [True]
    assert "secret" not in batch["webhook"]

    generated = scrapyd.call("POST", "/batches", {"urls": ["https://example.invalid/"],
                                                  "fields": FIELDS, "webhook_url": receiver.url})
    assert generated.json()["webhook"]["secret"].startswith("whsec_")


@pytest.mark.slow
def test_an_answer_ended_by_closing_the_connection_is_delivered_once(
    scrapyd: ScrapydServer, site: ExampleSite
) -> None:
    receiver = Receiver(free_port(), status=200, length_header=False).start()
    try:
        body = {"urls": [site.url("/products/3")], "fields": FIELDS,
                "webhook": {"url": receiver.url, "secret": new_secret()}}
        batch_id = scrapyd.call("POST", "/batches", body).json()["batch_id"]
        batch = wait_for(lambda: _delivered(scrapyd, batch_id, "alice"), what="the webhook")
    finally:
        receiver.stop()
    assert len(receiver.received) == 1
    assert [(d["ok"], d["status_code"]) for d in batch["webhook"]["deliveries"]] == [(True, 200)]


@pytest.mark.slow
def test_receiver_down_then_up_across_a_scrapyd_restart(
    mongo_uri: str, tmp_path: Path
) -> None:
    """Delivery keeps failing while the receiver is down; a new Scrapyd delivers it once."""
    uri = mongo_uri.replace(f"/{database_name(mongo_uri)}?", "/batchscraper_webhook_restart?")
    store = BatchStore(connect(uri), database_name(uri))
    try:
        _down_then_up(store, uri, tmp_path)
    finally:
        store.client.close()


def _down_then_up(store: BatchStore, uri: str, tmp_path: Path) -> None:
    store.ensure_indexes()
    secret = new_secret()
    receiver = Receiver(free_port())
    spec = parse_batch(["https://example.com/1"], FIELDS)
    batch_id = store.create_batch(
        spec, extra={"webhook": {"url": receiver.url, "secret": secret, "deliveries": []}}
    )["_id"]
    store.cancel_batch(batch_id)  # final status: the event is in the outbox

    first = start_scrapyd(tmp_path / "first", uri, keys=False)
    try:
        wait_for(lambda: len(store.get_batch(batch_id)["webhook"]["deliveries"]) >= 2,
                 what="failed attempts")
    finally:
        first.stop()
    receiver.start()
    second = start_scrapyd(tmp_path / "second", uri, keys=False)
    try:
        batch = wait_for(lambda: _delivered(second, batch_id, None), what="delivery")
        listed = second.call("GET", "/batches", owner=None).json()["batches"]
        assert batch_id in {b["batch_id"] for b in listed}  # open API: every batch
    finally:
        second.stop()
        receiver.stop()
    oks = [d["ok"] for d in batch["webhook"]["deliveries"]]
    assert oks[-1] is True and not any(oks[:-1]) and len(oks) >= 3
    assert len(receiver.received) == 1
    payload = verify_webhook(secret, *receiver.received[0])
    assert (payload["data"]["batch_id"], payload["data"]["status"]) == (batch_id, "cancelled")
    event = store.db[OUTBOX].find_one({"batch_id": batch_id})
    assert event["status"] == "delivered" and event["attempts"] == len(oks)


@pytest.mark.parametrize(("answer", "fields"), [
    (WebhookAnswer(500, b"ok", False),
     {"status_code": 500, "ok": False, "error": "HTTP 500", "answer": "ok"}),
    (WebhookAnswer(503, b"", False), {"status_code": 503, "ok": False, "error": "HTTP 503"}),
    (WebhookAnswer(200, b"ok", True), {"status_code": 200, "ok": True, "truncated": True}),
])
def test_a_refusal_is_logged_as_its_status_with_the_answer_apart(answer, fields):
    assert answer.attempt_fields() == fields


class StallingReceiver:
    """A webhook endpoint that holds its first request without answering (the node sending it
    dies meanwhile), then answers 204; it notes when each request arrived."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, str], bytes]] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append((time.time(), dict(self.headers), body))
                if len(receiver.received) == 1:
                    receiver.release.wait(60)
                    return  # the connection closes without an answer
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_an_event_claimed_by_a_node_that_died_is_sent_again_after_its_lease(
    mongo_uri: str, tmp_path: Path
) -> None:
    """Node A claims the event and dies mid-delivery; node B, running all along on the same
    MongoDB, leaves it alone while A's lease (2 x BATCH_WEBHOOK_TIMEOUT) holds, then sends it."""
    uri = mongo_uri.replace(f"/{database_name(mongo_uri)}?", "/batchscraper_webhook_lease?")
    store = BatchStore(connect(uri), database_name(uri))
    receiver = StallingReceiver()
    settings = {"batch_webhook_timeout": "12"}  # a lease of 24 s: B is up well within it
    nodes: list[ScrapydServer] = []
    try:
        store.ensure_indexes()
        secret = new_secret()
        spec = parse_batch(["https://example.com/1"], FIELDS)
        batch_id = store.create_batch(
            spec, extra={"webhook": {"url": receiver.url, "secret": secret, "deliveries": []}}
        )["_id"]
        nodes.append(start_scrapyd(tmp_path / "a", uri, keys=False, api_settings=settings))
        store.cancel_batch(batch_id)  # final status: the event is in the outbox
        wait_for(lambda: receiver.received, what="node A's attempt")
        lease_until = store.db[OUTBOX].find_one({"batch_id": batch_id})["lease_until"]
        nodes.append(start_scrapyd(tmp_path / "b", uri, keys=False, api_settings=settings))
        os.killpg(nodes[0].process.pid, signal.SIGKILL)  # A dies holding the lease
        nodes[0].process.wait()
        event = wait_for(lambda: store.db[OUTBOX].find_one({"_id": f"msg_{batch_id}_1",
                                                            "status": "delivered"}),
                         timeout=90, what="delivery by node B")
    finally:
        for node in nodes:
            node.stop()
        receiver.close()
        store.client.drop_database(store.db.name)
        store.client.close()
    (first_at, *_), (again_at, headers, raw) = receiver.received  # no third attempt
    lease_end = lease_until.replace(tzinfo=dt.UTC).timestamp()
    assert again_at - first_at > 20  # B left the event alone while A held it...
    assert lease_end - 1 <= again_at <= lease_end + 10  # ...and sent it once the lease ended
    assert {k.lower(): v for k, v in headers.items()}["webhook-id"] == f"msg_{batch_id}_1"
    assert verify_webhook(secret, headers, raw)["data"]["batch_id"] == batch_id
    # A's attempt was never recorded: the event was delivered at its first recorded attempt
    assert (event["attempts"], [entry["ok"] for entry in event["log"]]) == (1, [True])
