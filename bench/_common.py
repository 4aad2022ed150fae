"""Helpers shared by the benchmarks: process-tree memory, crawl runner, result lines."""

from __future__ import annotations

import compileall
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from batchscraper.store import BatchStore
from batchscraper.store.mongo import connect, database_name, ensure_embedded_server, home_dir

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results.jsonl"


def bench_store() -> tuple[BatchStore, str]:
    """The ``batchscraper_bench`` database on the (started or reused) embedded server."""
    port = ensure_embedded_server(home_dir())
    uri = f"mongodb://127.0.0.1:{port}/batchscraper_bench?directConnection=true"
    store = BatchStore(connect(uri), database_name(uri))
    store.ensure_indexes()
    return store, uri


def mongo_server_pid() -> int:
    """The pid of the embedded MongoDB server :func:`bench_store` uses."""
    return int(json.loads((home_dir() / "mongo.json").read_text())["pid"])


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of process ``pid``, or of this process's finished children."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CPU:
    """CPU seconds spent, while the block runs, by the crawl (a finished child), the MongoDB
    server and the example site (this process's threads)."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid

    def __enter__(self) -> CPU:
        self._before = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        after = self._now()
        spent = (a - b for a, b in zip(after, self._before, strict=True))
        self.crawl, self.mongodb, self.site = spent

    def _now(self) -> tuple[float, float, float]:
        server = cpu_seconds(self.server_pid) if self.server_pid else 0.0
        return cpu_seconds(), server, cpu_seconds(os.getpid())

    def per_page(self, pages: int) -> dict[str, float]:
        return {
            f"{side}_cpu_ms_per_page": round(seconds * 1000 / pages, 2)
            for side, seconds in (("crawl", self.crawl), ("mongodb", self.mongodb),
                                  ("site", self.site))
        }


def _spin() -> None:
    while True:
        pass


class BusyLoad:
    """``count`` processes that each keep one core busy, for a busy machine on demand."""

    def __init__(self, count: int) -> None:
        self.processes = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(count)]

    def __enter__(self) -> BusyLoad:
        for process in self.processes:
            process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            process.kill()
            process.join()


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def pss_bytes(pid: int) -> int:
    """Proportional set size of one process (shared pages split between sharers)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class MemorySampler:
    """Samples, every ``interval`` s, the PSS of ``root``'s Chromium tree and ``root``'s RSS."""

    def __init__(self, root: int, interval: float = 0.2) -> None:
        self.root = root
        self.interval = interval
        self.browser: list[int] = []
        self.process: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            tree = descendants(self.root)
            self.browser.append(sum(pss_bytes(p) for p in tree if "chrom" in comm(p)))
            self.process.append(rss_bytes(self.root))


def http_crawl_settings(concurrency: int, **extra: Any) -> dict[str, Any]:
    """Settings of a bench crawl of the local site over HTTP (no browser), ``extra`` on top."""
    return {
        "BATCH_ALLOWED_NETWORKS": "127.0.0.0/8",
        "LOG_LEVEL": "INFO",
        "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency,
        "BATCH_BROWSER_ENABLED": False,
        **extra,
    }


def compiled(code: Path) -> Path:
    """``code`` with its bytecode written (once): a crawl is measured as an installed project
    runs (pip and Scrapyd's eggs ship bytecode), even where PYTHONDONTWRITEBYTECODE is set."""
    if code not in _COMPILED:
        for package in ("batchscraper", "pipelines", "bench"):
            compileall.compile_dir(code / package, quiet=1)
        _COMPILED.add(code)
    return code


_COMPILED: set[Path] = set()


def run_crawl(
    args: dict[str, Any], settings: dict[str, Any], env: dict[str, str], interval: float = 0.2,
    code: Path = REPO,
) -> tuple[subprocess.CompletedProcess[str], MemorySampler]:
    """``scrapy crawl batch`` in a subprocess, sampling its memory while it runs; ``code``:
    the checkout whose code crawls (another one's, for before/after figures in one run)."""
    compiled(code)
    command = [sys.executable, "-m", "scrapy", "crawl", "batch"]
    for key, value in args.items():
        command += ["-a", f"{key}={value}"]
    # a crawl that ran is measured whatever its batch's status
    for key, value in {"BATCH_CRAWL_EXIT_BY_STATUS": False, **settings}.items():
        command += ["-s", f"{key}={value}"]
    with subprocess.Popen(
        command, cwd=code, env={**os.environ, **env, "PYTHONPATH": str(code)}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as process, MemorySampler(process.pid, interval) as sampler:
        stdout, stderr = process.communicate()
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    if result.returncode != 0:
        raise SystemExit(f"crawl failed:\n{stderr[-3000:]}")
    return result, sampler


def batch_id_from(stderr: str) -> str:
    for line in stderr.splitlines():
        if "Created batch b_" in line:
            return line.split("Created batch ", 1)[1].split()[0]
    raise SystemExit(f"no batch created:\n{stderr[-3000:]}")


def record(name: str, figures: dict[str, Any]) -> None:
    """Print the figures and append them as one JSON line to bench/results.jsonl."""
    line = {"bench": name, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}
    print(json.dumps(line, indent=None))
    with RESULTS.open("a") as handle:
        handle.write(json.dumps(line) + "\n")


def mb(value: float) -> float:
    return round(value / 1024 / 1024, 1)
