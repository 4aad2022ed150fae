"""Field accuracy of the whole spider on a labeled corpus (default ../shared/corpus/dev).

Serves every case's page from a local HTTP server on 127.0.0.1, runs
``scrapy crawl batch`` once per distinct schema (cases sharing a schema share
a batch), reads the records back from MongoDB and scores them with the
corpus's ``score.py`` (next to the corpus folder). Modes:

* ``structured``: no LLM (``BATCH_LLM_ENABLED=False``): structured data and
  page heuristics — the baseline;
* ``structured@PATH`` (``--compare PATH``): the same, crawling with the code of
  another checkout (``--compare ../main``: before/after figures in one run);
* ``llm``: whatever endpoint ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` name
  (skipped when neither is set);
* ``local`` (``--llm local``): the project's own llama.cpp server with its
  small model (:mod:`batchscraper.llm.local`, started, or built first, here);
* ``fake``: the deterministic fake server of the tests (``--fake``), which
  exercises the LLM path but knows nothing about real pages;
* ``heuristics`` (``--heuristics``): the page heuristics alone, in process, with
  the page's structured data ignored: what a page without markup would get.

Prints, per mode, field accuracy per kind, LLM calls, tokens and LLM seconds
per page, wall time and the items' error codes; the cases whose JSON-LD covers
every labeled field (target: >= 0.9, zero LLM calls); and one JSON line with
everything.

    .venv/bin/python bench/extract_accuracy.py [--corpus PATH] [--llm local]
        [--compare ../main] [--fake] [--heuristics] [--cases product-] [-v]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from statistics import mean
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
sys.path.insert(0, str(REPO))

from batchscraper.store import BatchStore, store_for  # noqa: E402
from batchscraper.store.mongo import ensure_embedded_server, stop_embedded_server  # noqa: E402

PARALLEL_CRAWLS = 3
CRAWL_TIMEOUT = 900


def load_cases(corpus: Path, pattern: str) -> dict[str, dict[str, Any]]:
    cases = {}
    for folder in sorted(corpus.iterdir()):
        if folder.is_dir() and pattern in folder.name:
            meta = json.loads((folder / "meta.json").read_text())
            cases[folder.name] = {
                "page": (folder / "page.html").read_bytes(),
                "schema": json.loads((folder / "schema.json").read_text()),
                "kind": meta["kind"],
                "jsonld_covers": covered_by(meta, ("json-ld",)),
                "structured_covers": covered_by(meta, ("json-ld", "microdata")),
            }
    return cases


def covered_by(meta: dict[str, Any], syntaxes: tuple[str, ...]) -> bool:
    """Whether one of ``syntaxes`` alone holds every labeled value (per the corpus's meta)."""
    found = meta.get("structured_data") or {}
    return any((found.get(syntax) or {}).get("covers_all_fields") for syntax in syntaxes)


def serve(cases: dict[str, dict[str, Any]]) -> ThreadingHTTPServer:
    """The corpus pages at http://127.0.0.1:<port>/<case_id>, bytes as saved."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            case = cases.get(self.path.strip("/"))
            body = case["page"] if case else b"not found"
            self.send_response(200 if case else 404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def crawl(case_ids: list[str], schema: dict[str, Any], base: str, env: dict[str, str],
          settings: dict[str, Any], workdir: Path, code: Path) -> str:
    """One batch over ``case_ids``; returns its id."""
    schema_file = workdir / f"schema-{case_ids[0]}.json"
    schema_file.write_text(json.dumps(schema))
    urls = ",".join(f"{base}/{case_id}" for case_id in case_ids)
    command = [sys.executable, "-m", "scrapy", "crawl", "batch", "-a", f"urls={urls}",
               "-a", f"schema=@{schema_file}", "-a", "render_js=never",
               "-s", "BATCH_ALLOWED_NETWORKS=127.0.0.0/8", "-s", "LOG_LEVEL=INFO"]
    for key, value in settings.items():
        command += ["-s", f"{key}={value}"]
    result = subprocess.run(command, cwd=code, env=env, capture_output=True, text=True,
                            timeout=CRAWL_TIMEOUT)
    for line in result.stderr.splitlines():
        if "Created batch b_" in line:
            return line.split("Created batch ", 1)[1].split()[0]
    raise RuntimeError(f"crawl failed:\n{result.stderr[-3000:]}")


def run_mode(name: str, cases: dict[str, dict[str, Any]], base: str, env: dict[str, str],
             settings: dict[str, Any], store: BatchStore, workdir: Path, corpus: Path,
             code: Path = REPO) -> dict[str, Any]:
    groups: dict[str, list[str]] = {}
    for case_id, case in cases.items():
        groups.setdefault(json.dumps(case["schema"], sort_keys=True), []).append(case_id)
    if code != REPO:
        env = {**env, "PYTHONPATH": str(code)}
    started = time.monotonic()
    with ThreadPoolExecutor(PARALLEL_CRAWLS) as pool:
        batches = list(pool.map(
            lambda ids: (ids, crawl(ids, cases[ids[0]]["schema"], base, env, settings, workdir,
                                    code)),
            groups.values()))
    wall = time.monotonic() - started
    items: dict[str, dict[str, Any]] = {}
    for case_ids, batch_id in batches:
        for case_id, item in zip(case_ids, store.iter_items(batch_id), strict=True):
            items[case_id] = item
    return summary(name, cases, items, wall, workdir, corpus)


def run_heuristics(cases: dict[str, dict[str, Any]], workdir: Path,
                   corpus: Path) -> dict[str, Any]:
    """The page heuristics alone on every case (structured data ignored), in this process."""
    from scrapy.http import HtmlResponse

    from batchscraper.extraction.coerce import coerce_to_schema
    from batchscraper.extraction.heuristics import fill_missing
    from batchscraper.extraction.validation import RecordChecker

    started = time.monotonic()
    items = {}
    for case_id, case in cases.items():
        url = f"http://127.0.0.1/{case_id}"
        html = HtmlResponse(url=url, body=case["page"]).text
        checker = RecordChecker(case["schema"])
        data, evidence = fill_missing(html, url, checker.schema, {}, {})
        data = coerce_to_schema(checker.with_unstated_nulls(data), checker.schema)
        items[case_id] = {"data": data, "evidence": evidence,
                          "status": "completed" if not checker.errors(data) else "invalid"}
    return summary("heuristics", cases, items, time.monotonic() - started, workdir, corpus)


def summary(name: str, cases: dict[str, dict[str, Any]], items: dict[str, dict[str, Any]],
            wall: float, workdir: Path, corpus: Path) -> dict[str, Any]:
    """One mode's scores (by the corpus's scorer), LLM usage and outcomes."""
    predictions = workdir / f"predictions-{name.replace('/', '_')}.jsonl"
    predictions.write_text("".join(
        json.dumps({"case_id": case_id, "data": item.get("data")
                    if isinstance(item.get("data"), dict) else {}}) + "\n"
        for case_id, item in items.items()))
    scored = json.loads(subprocess.run(
        [sys.executable, str(scorer(corpus)), str(selected(corpus, cases, workdir)),
         str(predictions), "--json"],
        capture_output=True, text=True, check=True).stdout)
    calls = [items[c].get("llm_calls") or 0 for c in cases]
    tokens = [(items[c].get("tokens") or {}) for c in cases]
    covered = [c for c in cases if cases[c]["jsonld_covers"]]
    statuses = {c: (items[c].get("error") or {}).get("code", items[c]["status"]) for c in cases}
    llm_ms = [items[c].get("llm_ms") for c in cases]
    return {
        "mode": name,
        "wall_seconds": round(wall, 1),
        "outcomes": dict(Counter(statuses.values()).most_common()),
        "llm_seconds_per_page": (round(mean(ms or 0 for ms in llm_ms) / 1000, 2)
                                 if any(ms is not None for ms in llm_ms) else None),
        "field_accuracy": scored["overall"]["field_accuracy"],
        "per_kind": {k: v["field_accuracy"] for k, v in scored["per_kind"].items()},
        "cases": len(cases),
        "llm_calls_per_page": round(mean(calls), 3),
        "tokens_in_per_page": round(mean(t.get("in", 0) for t in tokens), 1),
        "tokens_out_per_page": round(mean(t.get("out", 0) for t in tokens), 1),
        "structured_cases": structured_summary(cases, scored, items),
        "jsonld_cases": {c: {"accuracy": round(scored["per_case"][c]["accuracy"], 3),
                             "llm_calls": items[c].get("llm_calls") or 0} for c in covered},
        "statuses": statuses,
        "per_case": {c: round(scored["per_case"][c]["accuracy"], 3) for c in cases},
    }


def structured_summary(cases: dict[str, dict[str, Any]], scored: dict[str, Any],
                       items: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Accuracy and LLM calls over the cases that JSON-LD or microdata alone answers."""
    covered = [c for c in cases if cases[c]["structured_covers"]]
    if not covered:
        return {"cases": 0}
    return {"cases": len(covered),
            "accuracy": round(mean(scored["per_case"][c]["accuracy"] for c in covered), 3),
            "llm_calls": sum(items[c].get("llm_calls") or 0 for c in covered)}


def comparison(results: list[dict[str, Any]]) -> None:
    """Field accuracy per kind (rows) and mode (columns)."""
    kinds = sorted({kind for result in results for kind in result["per_kind"]})
    width = max(12, *(len(result["mode"]) + 2 for result in results))
    print("\n" + "kind".ljust(10) + "".join(r["mode"].rjust(width) for r in results))
    for kind in kinds:
        print(kind.ljust(10) + "".join(
            f"{r['per_kind'].get(kind, 0):.3f}".rjust(width) for r in results))
    print("overall".ljust(10) + "".join(f"{r['field_accuracy']:.3f}".rjust(width)
                                        for r in results))


def selected(corpus: Path, cases: dict[str, Any], workdir: Path) -> Path:
    """``corpus``, or a folder linking only the cases run (``--cases``), for the scorer."""
    if len(cases) == sum(1 for folder in corpus.iterdir() if folder.is_dir()):
        return corpus
    subset = workdir / "selected-cases"
    subset.mkdir(exist_ok=True)
    for case_id in cases:
        if not (subset / case_id).exists():
            (subset / case_id).symlink_to(corpus / case_id)
    return subset


def scorer(corpus: Path) -> Path:
    """The corpus's own ``score.py`` (beside its folder), else the dev corpus's."""
    own = corpus.parent / "score.py"
    return own if own.exists() else CORPUS / "score.py"


def local_llm_settings() -> dict[str, Any]:
    """Settings that point the crawl at the project's local llama.cpp server (started here)."""
    from batchscraper.llm import local
    from batchscraper.llm.config import PLACEHOLDER_API_KEY

    port = local.ensure_running()
    return {"OPENAI_BASE_URL": local.base_url(port), "OPENAI_API_KEY": PLACEHOLDER_API_KEY,
            "BATCH_LLM_MODEL": local.DEFAULT_MODEL.name, "BATCH_LLM_CACHE_ENABLED": False}


def report(result: dict[str, Any], verbose: bool) -> None:
    print(f"\n== {result['mode']}: field_accuracy={result['field_accuracy']:.3f} over "
          f"{result['cases']} cases; LLM calls/page {result['llm_calls_per_page']}, "
          f"tokens/page in {result['tokens_in_per_page']} out {result['tokens_out_per_page']}; "
          f"LLM s/page {result['llm_seconds_per_page']}; wall {result['wall_seconds']} s")
    print(f"   outcomes: {result['outcomes']}")
    for kind, accuracy in result["per_kind"].items():
        print(f"   {kind:<10} {accuracy:.3f}")
    print(f"   structured-data-covered cases: {result['structured_cases']}")
    covered = result["jsonld_cases"]
    if covered:
        low = {c: v for c, v in covered.items() if v["accuracy"] < 0.9 or v["llm_calls"]}
        print(f"   JSON-LD-covered cases: {len(covered)}; below 0.9 or with LLM calls: "
              f"{low or 'none'}")
    if verbose:
        for case_id, accuracy in result["per_case"].items():
            print(f"   {case_id:<42} {accuracy:.3f}  {result['statuses'][case_id]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS / "dev",
                        help="a folder of cases (case/page.html, schema.json, expected.json)")
    parser.add_argument("--llm", choices=("local",),
                        help="local: also run with the project's llama.cpp server and model")
    parser.add_argument("--compare", type=Path, action="append", default=[],
                        help="also run the no-LLM mode with another checkout's code")
    parser.add_argument("--fake", action="store_true", help="also run against the fake LLM")
    parser.add_argument("--heuristics", action="store_true",
                        help="also score the page heuristics alone (structured data ignored)")
    parser.add_argument("--cases", default="", help="only case ids containing this text")
    parser.add_argument("--keep", type=Path,
                        help="copy each mode's predictions.jsonl here (for score.py -v)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    corpus = args.corpus.resolve()
    cases = load_cases(corpus, args.cases)
    server = serve(cases)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        home = workdir / "home"
        uri = os.environ.get("MONGO_URI") or (
            f"mongodb://127.0.0.1:{ensure_embedded_server(home)}/bench_accuracy"
            "?directConnection=true")
        env = {**os.environ, "MONGO_URI": uri, "BATCHSCRAPER_HOME": str(home)}
        store = store_for(uri)
        no_llm = {"BATCH_LLM_ENABLED": False}
        modes: list[tuple[str, dict[str, str], dict[str, Any], Path]] = [
            ("structured", env, no_llm, REPO)]
        modes += [(f"structured@{code.name}", env, no_llm, code.resolve())
                  for code in args.compare]
        if os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY"):
            modes.append(("llm", env, {"BATCH_LLM_CACHE_ENABLED": False}, REPO))
        if args.llm == "local":
            modes.append(("local", env, local_llm_settings(), REPO))
        fake = None
        if args.fake:
            from tests.fakellm import FakeLLM

            fake = FakeLLM().start()
            modes.append(("fake", env, fake.settings(), REPO))
        try:
            results = [run_mode(name, cases, base, mode_env, settings, store, workdir, corpus,
                                code)
                       for name, mode_env, settings, code in modes]
            if args.heuristics:
                results.append(run_heuristics(cases, workdir, corpus))
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                for kept in workdir.glob("*.jsonl"):
                    (args.keep / kept.name).write_bytes(kept.read_bytes())
        finally:
            server.shutdown()
            if fake is not None:
                fake.stop()
            if not os.environ.get("MONGO_URI"):
                stop_embedded_server(home)
    for result in results:
        report(result, args.verbose)
    comparison(results)
    baseline = results[0]["field_accuracy"]
    line = {"bench": "extract_accuracy", "baseline_mode": "structured",
            "results": [{k: v for k, v in r.items() if k not in ("per_case", "statuses")}
                        for r in results],
            "ratios_vs_structured": {r["mode"]: round(r["field_accuracy"] / baseline, 3)
                                     if baseline else None for r in results}}
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
