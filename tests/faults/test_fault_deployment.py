"""Deployment defaults: Scrapyd listens on loopback only; a crawl listens on nothing
(one that renders pages: only on its egress guard's loopback port).

(Refusing to start exposed without API keys, or with keys but without basic
auth, is tested in tests/test_api.py::test_unsafe_configurations_refuse_to_start.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from scrapy.settings import Settings
from scrapy.utils.conf import build_component_list

from batchscraper.demo.site import ExampleSite
from batchscraper.store import BatchStore
from tests.faults.conftest import (
    background_crawl,
    new_batch,
    slow_products,
    start_fault_scrapyd,
    wait_until,
)

LISTEN = "0A"


def listening_sockets() -> dict[int, tuple[str, int]]:
    """Listening TCP sockets of this network namespace: inode -> (hex address, port)."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[3] == LISTEN:
                    address, port = fields[1].split(":")
                    found[int(fields[9])] = (address, int(port, 16))
    return found


def sockets_of(pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def test_project_settings_load_no_telnet_console_or_remote_control() -> None:
    settings = Settings()
    settings.setmodule("batchscraper.settings")
    extensions = build_component_list(settings.getwithbase("EXTENSIONS"))
    assert "scrapy.extensions.corestats.CoreStats" in extensions  # Scrapy's defaults read
    assert not [path for path in extensions if "telnet" in path or "remote_control" in path]


@pytest.mark.slow
def test_scrapyd_listens_on_loopback_only(own_store: BatchStore, tmp_path: Path) -> None:
    server = start_fault_scrapyd(tmp_path / "scrapyd", own_store.uri)  # type: ignore[attr-defined]
    try:
        port = int(server.url.rsplit(":", 1)[1])
        listening = listening_sockets()
        mine = [listening[inode] for inode in sockets_of(server.process.pid) if inode in listening]
    finally:
        server.stop()
    assert mine, "Scrapyd holds no listening socket"
    assert all(found_port == port for _, found_port in mine), mine  # nothing else listens
    assert {address for address, _ in mine} == {"0100007F"}, mine  # 127.0.0.1 only


@pytest.mark.slow
def test_a_running_crawl_listens_on_nothing(
    store: BatchStore, mongo_uri: str, batch_home: Path, site: ExampleSite, tmp_path: Path
) -> None:
    """No telnet console, no remote-control server: a crawl opens no listening socket."""
    batch_id = new_batch(store, slow_products(site, 6, delay=1.0), concurrency=2)
    with background_crawl(mongo_uri, batch_home, tmp_path / "crawl.log",
                          batch_id=batch_id) as crawl:
        wait_until(lambda: store.get_batch(batch_id)["counters"]["completed"] >= 1, 60,
                   "the crawl to be under way")
        listening = listening_sockets()
        assert not sockets_of(crawl.pid) & set(listening)
        assert crawl.poll() is None


@pytest.mark.slow
@pytest.mark.browser
def test_a_rendering_crawl_listens_only_on_its_egress_guard(
    store: BatchStore, mongo_uri: str, batch_home: Path, site: ExampleSite, tmp_path: Path
) -> None:
    """Chromium's proxy is the one listening socket: on 127.0.0.1, nowhere else."""
    batch_id = new_batch(store, slow_products(site, 6, delay=1.0), concurrency=2,
                         render_js="always")
    with background_crawl(mongo_uri, batch_home, tmp_path / "crawl.log",
                          batch_id=batch_id) as crawl:
        wait_until(lambda: store.get_batch(batch_id)["counters"]["completed"] >= 1, 60,
                   "the crawl to be under way")
        listening = listening_sockets()
        mine = [listening[inode] for inode in sockets_of(crawl.pid) if inode in listening]
        assert crawl.poll() is None
    assert len(mine) == 1, mine
    assert mine[0][0] == "0100007F", mine  # 127.0.0.1 only
