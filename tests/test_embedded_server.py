"""The embedded server aborts the transaction of a process killed in the middle of it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient

from tests.api_fixtures import free_port

ABANDON = """
import os, sys
from pymongo import MongoClient
client = MongoClient(sys.argv[1])
session = client.start_session()
session.start_transaction()
client.t.docs.update_one({"_id": 1}, {"$inc": {"n": 1}}, session=session)
os._exit(0)  # killed mid-transaction: no commit, no abort, no endSessions
"""


@pytest.fixture()
def server_uri(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "batchscraper.store.embedded_server", "--port", str(port),
               "--storage-path", str(tmp_path / "db"), "--transaction-lifetime", "2"]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as server:
        uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        client: MongoClient = MongoClient(uri, serverSelectionTimeoutMS=30_000)
        client.admin.command("ping")
        client.close()
        yield uri
        server.terminate()


@pytest.mark.slow
def test_a_write_after_an_abandoned_transaction_goes_through(server_uri: str) -> None:
    with MongoClient(server_uri, timeoutMS=20_000) as client:
        client.t.docs.replace_one({"_id": 1}, {"_id": 1, "n": 0}, upsert=True)
        subprocess.run([sys.executable, "-c", ABANDON, server_uri], check=True, timeout=60)
        started = time.monotonic()
        # a plain write on the same document: without the reaper it waits inside the server
        # forever (here: until the client's 20 s timeout)
        client.t.docs.update_one({"_id": 1}, {"$inc": {"n": 10}})
        assert client.t.docs.find_one({"_id": 1})["n"] == 10  # the abandoned +1 was rolled back
        assert time.monotonic() - started < 30
