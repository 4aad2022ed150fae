"""The local LLM server's management, without building anything: state, checks, the CLI."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from batchscraper.llm import local


def run_cli(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BATCHSCRAPER_LLM_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "batchscraper.cli", "llm-server", *args],
                          env=env, capture_output=True, text=True, timeout=60)


def test_status_and_stop_of_an_empty_cache(tmp_path: Path) -> None:
    status = run_cli(tmp_path, "status")
    assert status.returncode == 1 and "not running" in status.stdout
    stop = run_cli(tmp_path, "stop")
    assert stop.returncode == 0 and "not running" in stop.stdout
    assert not local.is_built(tmp_path)


def test_a_stale_state_file_is_not_a_running_server(tmp_path: Path) -> None:
    (tmp_path / "server.json").write_text('{"port": 1, "pid": 999999999}')
    assert local.running_port(tmp_path) is None
    assert run_cli(tmp_path, "status").returncode == 1


def test_a_download_that_does_not_match_its_pinned_sha256_is_removed(tmp_path: Path) -> None:
    good = tmp_path / "good.bin"
    good.write_bytes(b"model bytes")
    local._check_sha256(good, hashlib.sha256(b"model bytes").hexdigest())
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"tampered")
    with pytest.raises(RuntimeError, match="sha256"):
        local._check_sha256(bad, hashlib.sha256(b"model bytes").hexdigest())
    assert not bad.exists() and good.exists()
