"""MongoDB connection: the one in ``MONGO_URI``, or an embedded server.

With ``MONGO_URI`` unset, the first process that needs a database starts a
local MongoDB-wire server (secantusdb, see
:mod:`batchscraper.store.embedded_server`) with its data under
``BATCHSCRAPER_HOME``; every later process (another spider, Scrapyd, the tests) finds
it through a port file and reuses it. A file lock makes the start-or-reuse decision
safe between concurrent processes.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pymongo
from pymongo.errors import PyMongoError

logger = logging.getLogger(__name__)

DEFAULT_HOME = ".batchscraper"
DEFAULT_DATABASE = "batchscraper"
START_TIMEOUT = 120.0  # a large database recovering after a crash can take a while
PING_TIMEOUT_MS = 2_000
# servers this process started; kept so their Popen objects are not collected while running
_STARTED: list[subprocess.Popen[bytes]] = []


def home_dir() -> Path:
    """The folder for embedded data, logs and the server's port file."""
    return Path(os.environ.get("BATCHSCRAPER_HOME") or DEFAULT_HOME).resolve()


def mongo_uri() -> str:
    """``MONGO_URI`` if set; otherwise the URI of the (started or reused) embedded server."""
    uri = os.environ.get("MONGO_URI")
    if uri:
        return uri
    port = ensure_embedded_server(home_dir())
    return f"mongodb://127.0.0.1:{port}/{DEFAULT_DATABASE}?directConnection=true"


def connect(uri: str | None = None) -> pymongo.MongoClient:
    """A client for ``uri`` (default: :func:`mongo_uri`). Build one per process."""
    return pymongo.MongoClient(uri or mongo_uri(), tz_aware=True, connect=False)


def database_name(uri: str) -> str:
    """The database named in the URI's path, or the default."""
    parsed = pymongo.uri_parser.parse_uri(uri)
    return parsed.get("database") or DEFAULT_DATABASE


def ensure_embedded_server(home: Path) -> int:
    """Start the embedded server under ``home`` unless a live one is there; return its port."""
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home / "mongo.lock"):
        state = _read_state(home)
        if state and _alive(state["pid"]) and _ping(state["port"]):
            return int(state["port"])
        port = _free_port()
        with (home / "mongo.log").open("ab") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "batchscraper.store.embedded_server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--storage-path",
                    str(home / "db"),
                    "--log-level",
                    "WARNING",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # outlives the process that started it
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not _ping(port):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"embedded MongoDB server did not start; see {home / 'mongo.log'}"
                )
            time.sleep(0.1)
        _STARTED.append(process)
        (home / "mongo.json").write_text(json.dumps({"port": port, "pid": process.pid}))
        logger.info("Started embedded MongoDB server on 127.0.0.1:%d (data in %s)", port, home)
        return port


def stop_embedded_server(home: Path) -> bool:
    """Stop the embedded server under ``home``, if one runs. Returns whether one was stopped."""
    with _locked(home / "mongo.lock"):
        state = _read_state(home)
        if not state or not _alive(state["pid"]):
            return False
        os.kill(state["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(state["pid"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(state["pid"]):
            os.kill(state["pid"], signal.SIGKILL)
        for process in [p for p in _STARTED if p.pid == state["pid"]]:
            process.poll()  # records the exit, so the Popen is not "still running" at exit
            _STARTED.remove(process)
        (home / "mongo.json").unlink(missing_ok=True)
        return True


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_state(home: Path) -> dict[str, int] | None:
    try:
        state = json.loads((home / "mongo.json").read_text())
        return {"port": int(state["port"]), "pid": int(state["pid"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0); reap it if it is ours
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return finished == 0


def _ping(port: int) -> bool:
    client: pymongo.MongoClient = pymongo.MongoClient(
        f"mongodb://127.0.0.1:{port}/?directConnection=true",
        serverSelectionTimeoutMS=PING_TIMEOUT_MS,
        connectTimeoutMS=PING_TIMEOUT_MS,
    )
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
