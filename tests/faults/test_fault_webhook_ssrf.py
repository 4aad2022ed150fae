"""Webhook targets pass the SSRF guard: as written at submit, as resolved at delivery."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

from batchscraper.downloadermiddlewares.ssrf import AddressPolicy, FetchBlockedError
from batchscraper.store import BatchStore
from batchscraper.store.outbox import OUTBOX
from batchscraper.webhooks import webhook_address
from tests.api_fixtures import Receiver, free_port
from tests.faults.conftest import PRODUCT_SCHEMA, start_fault_scrapyd, wait_until

# the name of this machine, which /etc/hosts maps to a loopback address
LOCAL_HOSTNAME = socket.gethostname()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://2130706433/hook",
        "http://[::ffff:7f00:1]/hook",
        "http://169.254.169.254/latest",
        "http://10.1.2.3/hook",
        "http://app.localhost/hook",
        "http://metadata.google.internal/",
    ],
)
def test_delivery_refuses_non_public_targets(url: str) -> None:
    with pytest.raises(FetchBlockedError):
        webhook_address(url, AddressPolicy())


def test_delivery_connects_to_the_address_it_checked() -> None:
    allowed = AddressPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    assert str(webhook_address("http://127.0.0.1:8080/hook", allowed)) == "127.0.0.1"
    assert webhook_address(f"http://{LOCAL_HOSTNAME}:8080/hook", allowed).is_loopback


@pytest.mark.slow
def test_webhooks_to_private_targets_refused_at_submit_and_at_delivery(
    own_store: BatchStore, tmp_path: Path
) -> None:
    """Webhook SSRF guard with no network allowed for webhooks (crawls may reach 127.0.0.1)."""
    assert not ipaddress.ip_address(socket.gethostbyname(LOCAL_HOSTNAME)).is_global
    receiver = Receiver(free_port()).start()
    server = start_fault_scrapyd(tmp_path / "scrapyd", own_store.uri,  # type: ignore[attr-defined]
                                 batch_allowed_networks="")
    try:
        body = {"urls": ["http://10.0.0.1/"], "schema": PRODUCT_SCHEMA}
        for target in (receiver.url, f"http://[::ffff:7f00:1]:{receiver.port}/hook",
                       "http://app.localhost/hook", "http://169.254.169.254/"):
            answer = server.call("POST", "/batches", {**body, "webhook_url": target}, owner=None)
            assert answer.status == 422, answer.body
            error = answer.json()["error"]
            assert error["code"] == "INVALID_WEBHOOK", error
        assert own_store.batches.count_documents({}) == 0  # nothing stored

        # a name is only resolved at delivery: this one resolves to loopback
        hook = f"http://{LOCAL_HOSTNAME}:{receiver.port}/hook"
        answer = server.call("POST", "/batches", {**body, "webhook_url": hook}, owner=None)
        assert answer.status == 202, answer.body
        batch_id = answer.json()["batch_id"]
        event = wait_until(
            lambda: own_store.db[OUTBOX].find_one({"batch_id": batch_id, "status": "failed"}),
            60, f"the blocked delivery; log:\n{server.log_tail()}",
        )
    finally:
        server.stop()
        receiver.stop()
    assert event["attempts"] == 1  # refused once, not retried
    assert event["log"][0]["error"].startswith("FETCH_BLOCKED: address 127.0.0.1")
    assert receiver.received == []
    batch = own_store.get_batch(batch_id)
    assert batch["status"] == "failed"  # the crawl of 10.0.0.1 was blocked too
    assert batch["webhook"]["status"] == "failed"
