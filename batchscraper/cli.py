"""The ``batchscraper`` command: helpers around ``scrapy crawl batch`` and the HTTP API.

``batchscraper demo`` runs a real batch against the bundled example site,
so a fresh machine with no internet sees the whole flow: fetch, extract,
validate, store in MongoDB, export. ``batchscraper serve`` starts Scrapyd
with the batch API; ``submit``, ``status``, ``list``, ``cancel``, ``retry``,
``export``, ``schedule`` and ``templates`` talk to it (``--url``/``BATCHSCRAPER_API_URL``,
``--api-key``/``BATCHSCRAPER_API_KEY``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from scrapy.utils.conf import closest_scrapy_cfg

from batchscraper.batchargs import add_batch_arguments, batch_body
from batchscraper.client import (
    BatchApiError,
    BatchClient,
    BatchStatus,
    Change,
    FieldChange,
    ItemRecord,
    MonitorOutcome,
)
from batchscraper.demo.site import ExampleSite
from batchscraper.exceptions import BatchError
from batchscraper.schedules.cli import add_schedule_parser, schedule_command
from batchscraper.store import store_for
from batchscraper.store.mongo import ensure_embedded_server, home_dir
from batchscraper.templates.cli import add_templates_parser, templates_command

EXIT_BAD_INPUT = 2
EXIT_NOT_COMPLETED = 1  # `scrapy crawl batch` and `--wait`: the batch did not complete
DEMO_NETWORK = "127.0.0.0/8"
DEFAULT_API = "http://127.0.0.1:6800"

DEMO_SCHEMA = [
    {"field": "name", "type": "string", "required": True, "example": "Product 1"},
    {"field": "sku", "type": "string", "example": "SKU-00001"},
    {"field": "brand", "type": "string", "example": "Acme"},
    {"field": "price", "type": "number", "required": True, "example": 9.99},
    {"field": "in_stock", "type": "boolean", "example": True},
]
# a page without structured data (read by the page heuristics), and a few URLs that fail,
# to show how errors are recorded
DEMO_EXTRA = ("/plain/1", "/status/404", "/binary", "/redirect-loop")


def demo(pages: int, port: int) -> int:
    """Serve the example site, crawl ``pages`` product pages plus a few failures, show results.

    The crawl is run from the very command line it prints, so pasting it (with the
    example site served on the same port) runs the same batch again.
    """
    workdir = home_dir() / "demo"
    workdir.mkdir(parents=True, exist_ok=True)
    results = workdir / "results.jsonl"
    with _example_site(port) as site:
        served_port = int(site.base_url.rsplit(":", 1)[1])
        urls = [site.url(f"/products/{n}") for n in range(1, pages + 1)]
        urls += [site.url(path) for path in DEMO_EXTRA]
        (workdir / "urls.txt").write_text("\n".join(urls) + "\n")
        (workdir / "schema.json").write_text(json.dumps(DEMO_SCHEMA, indent=2))
        command = shlex.join([
            "scrapy", "crawl", "batch",
            "-a", f"urls=@{workdir / 'urls.txt'}",
            "-a", f"schema=@{workdir / 'schema.json'}",
            "-a", "options=" + json.dumps({"concurrency": 16, "timeout_per_url": 10}),
            "-O", str(results),
            # the example site is on 127.0.0.1, which the SSRF guard refuses by default
            "-s", f"BATCH_ALLOWED_NETWORKS={DEMO_NETWORK}",
        ])
        print("$ " + command, flush=True)
        finished = subprocess.run(command, shell=True, env=_demo_env(), check=False)
    # the demo's failing URLs make the batch partial (exit 1): the crawl still ran
    if finished.returncode not in (0, EXIT_NOT_COMPLETED):
        return finished.returncode
    records = [json.loads(line) for line in results.read_text().splitlines()]
    batch_id = records[0]["batch_id"]
    batch = store_for().get_batch(batch_id)
    print(f"\nbatch {batch_id}: {batch['status']}, counters {json.dumps(batch['counters'])}")
    for record in sorted(records, key=lambda r: r["index"])[:3]:
        print(json.dumps({k: record[k] for k in ("index", "url", "status", "data")}))
    failed = [r for r in records if r["status"] == "failed"]
    for record in failed:
        print(f"failed: {record['url']} -> {record['error']['code']}: {record['error']['message']}")
    print(f"\nrecords: {results}\nMongoDB: batches/items in {store_for().db.name}")
    print(f"\ntry it yourself: serve the example site"
          f" ({sys.executable} -m batchscraper.demo.site --port {served_port}), then run,"
          f" from {Path.cwd()}:\n{command}")
    return 0


def _example_site(port: int) -> ExampleSite:
    """The example site on ``port``, or on a free port when that one is taken."""
    try:
        return ExampleSite(port=port).start()
    except OSError:
        return ExampleSite().start()


def _demo_env() -> dict[str, str]:
    """This interpreter's ``scrapy`` first on PATH, and the project's settings."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, "SCRAPY_SETTINGS_MODULE": "batchscraper.settings"}


# -- the HTTP API ------------------------------------------------------------------


def serve(port: int | None, bind: str | None) -> int:
    """Run Scrapyd with the project's scrapyd.conf (and the embedded MongoDB unless MONGO_URI).

    Scrapyd runs in this process: Ctrl-C or SIGTERM stops it and, first, its
    crawls (:class:`batchscraper.api.jobs.CrawlShutdown`).
    """
    from scrapyd.__main__ import main as scrapyd_main

    config = closest_scrapy_cfg()
    if not config or not (Path(config).parent / "scrapyd.conf").exists():
        sys.stderr.write("batchscraper serve: run it in the project directory "
                         "(where scrapy.cfg and scrapyd.conf are)\n")
        return EXIT_BAD_INPUT
    home = home_dir()
    home.mkdir(parents=True, exist_ok=True)
    os.chdir(Path(config).parent)
    os.environ["BATCHSCRAPER_HOME"] = str(home)  # the spiders Scrapyd starts find the same home
    if not os.environ.get("MONGO_URI"):
        print(f"MongoDB: embedded server on 127.0.0.1:{ensure_embedded_server(home)}"
              f" (data in {home / 'db'})", flush=True)
    if port:
        os.environ["SCRAPYD_HTTP_PORT"] = str(port)
    if bind:
        os.environ["SCRAPYD_BIND_ADDRESS"] = bind
    sys.argv = ["scrapyd", f"--pidfile={home / 'scrapyd.pid'}"]
    scrapyd_main()
    return 0


class OutputClosed(Exception):
    """Whoever read this command's output stopped reading (``| head``)."""


def _out(text: str, *, flush: bool = True) -> None:
    """One line of the command's output on stdout; a closed pipe ends the command quietly."""
    try:
        sys.stdout.write(text + "\n")
    except BrokenPipeError:
        raise OutputClosed from None
    if flush:
        _flush()


def _flush() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise OutputClosed from None


def _progress(batch: BatchStatus) -> None:
    """``--wait`` progress goes to stderr, so stdout holds only the command's answer."""
    sys.stderr.write(_status_line(batch) + "\n")
    sys.stderr.flush()


def _status_line(batch: BatchStatus) -> str:
    """A batch's id, status, progress and counters; its monitors' results once it ended."""
    counters = batch["counters"]
    line = (f"{batch['batch_id']}  {batch['status']:<9} {batch['progress']['percent']:5.1f}%  "
            f"completed={counters['completed']} failed={counters['failed']} "
            f"cancelled={counters['cancelled']} pending={counters['pending']} "
            f"leased={counters.get('leased', 0)} running={counters['running']} "
            f"total={counters['total']}")
    results = batch.get("monitors")
    return f"{line}  monitors: {monitors_text(results)}" if results else line


def monitors_text(results: list[MonitorOutcome]) -> str:
    """Each monitor's result: ``name=value ok|FAILED (min|max threshold)``, comma-separated."""
    return ", ".join(
        f"{result['name']}={result['value']:g} {'ok' if result['ok'] else 'FAILED'} "
        f"({'max' if result['name'].startswith('max_') else 'min'} {result['threshold']:g})"
        for result in results
    )


def error_line(command: str, exc: Exception) -> str:
    """An error as one line: the message names every problem (the API's and the CLI's do)."""
    return " ".join(f"batchscraper {command}: error: {exc}".splitlines())


def change_line(record: ItemRecord) -> str:
    """One changed item: index, change, URL, then each changed field as old -> new."""
    change: Change = record.get("change") or {}
    fields = "  ".join(f"{name}: {_old_to_new(values)}"
                       for name, values in (change.get("fields") or {}).items())
    line = f"{record['index']:>6}  {change.get('status', '-'):<10} {record['url']}  {fields}"
    return line.rstrip()


def _old_to_new(values: FieldChange) -> str:
    if values.get("values_omitted"):  # too large to keep on the change: their sizes
        return f"({values['old_bytes']} -> {values['new_bytes']} bytes, values omitted)"
    return (f"{json.dumps(values.get('old'), ensure_ascii=False)} -> "
            f"{json.dumps(values.get('new'), ensure_ascii=False)}")


def wait_exit_code(final: BatchStatus) -> int:
    """``--wait``: 0 when every item completed, 1 when the batch ended otherwise."""
    return 0 if final["status"] == "completed" else EXIT_NOT_COMPLETED


def api_command(args: argparse.Namespace) -> int:
    """Run one of the HTTP API subcommands."""
    client = BatchClient(args.url, args.api_key)
    if args.command == "schedule":
        return schedule_command(client, args, _out, monitors_text)
    if args.command == "templates":
        return templates_command(client, args, _out)
    if args.command == "submit":
        batch = client.submit(**batch_body(args), rerun_of=args.rerun_of, name=args.name,
                              tags=args.tag, idempotency_key=args.idempotency_key)
        _out(json.dumps(batch, indent=2))
        if args.wait:
            return wait_exit_code(client.wait(batch["batch_id"], progress=_progress))
    elif args.command == "status":
        if args.wait:
            final = client.wait(args.batch_id, progress=_progress)
            _out(_status_line(final))
            return wait_exit_code(final)
        _out(_status_line(client.get(args.batch_id, limit=1)))
    elif args.command == "list":
        answer = client.list(page=args.page, limit=args.limit, status=args.status)
        for batch in answer["batches"]:
            _out(_status_line(batch))
        pages = answer["pagination"]
        if pages["total"]:
            _out(f"page {pages['page']}/{pages['total_pages']}, {pages['total']} batches")
        else:
            _out("no batches")
    elif args.command in ("cancel", "retry"):
        if args.command == "cancel":
            cancelled = client.cancel(args.batch_id)
        else:
            cancelled = client.retry(args.batch_id, only_retryable=args.only_retryable)
        _out(json.dumps(cancelled, indent=2))
    elif args.command == "changes":
        for record in client.iter_changes(args.batch_id, change=args.change):
            _out(json.dumps(record, ensure_ascii=False) if args.json else change_line(record),
                 flush=False)
        _flush()
    elif args.command == "export":
        records = client.iter_items(args.batch_id, status=args.status)
        lines = (json.dumps(record, ensure_ascii=False) for record in records)
        if args.output:
            with Path(args.output).open("w", encoding="utf-8") as out:
                out.writelines(line + "\n" for line in lines)
        else:
            for line in lines:
                _out(line, flush=False)
            _flush()
    return 0


def _add_api_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve_parser = commands.add_parser("serve", help="start Scrapyd with the batch API")
    serve_parser.add_argument("--port", type=int, help="HTTP port (default: scrapyd.conf, 6800)")
    serve_parser.add_argument("--bind", help="address (default 127.0.0.1; others need API keys)")
    client_options = argparse.ArgumentParser(add_help=False)
    client_options.add_argument("--url", help=f"API root (BATCHSCRAPER_API_URL, {DEFAULT_API})")
    client_options.add_argument("--api-key", help="API key (BATCHSCRAPER_API_KEY)")
    submit = commands.add_parser("submit", parents=[client_options], help="submit a batch")
    add_batch_arguments(submit)
    submit.add_argument("--idempotency-key")
    submit.add_argument("--rerun-of", metavar="BATCH_ID", help="re-run a batch's inputs")
    submit.add_argument("--name", help="a name to find the batch by (list, dashboard)")
    submit.add_argument("--tag", action="append", help="a free tag; repeat for more")
    submit.add_argument("--wait", action="store_true", help="poll until the batch ends")
    changes = commands.add_parser("changes", parents=[client_options],
                                  help="what changed against the batch compared with")
    changes.add_argument("batch_id")
    changes.add_argument("--change", help="statuses, e.g. changed,gone (default: all but "
                                          "unchanged)")
    changes.add_argument("--json", action="store_true", help="one JSON record per line")
    for name, text in (("status", "a batch's progress"), ("cancel", "cancel a batch"),
                       ("retry", "re-run failed items"), ("export", "records as JSONL")):
        sub = commands.add_parser(name, parents=[client_options], help=text)
        sub.add_argument("batch_id")
        if name == "status":
            sub.add_argument("--wait", action="store_true", help="poll until the batch ends")
        if name == "retry":
            sub.add_argument("--only-retryable", action="store_true")
        if name == "export":
            sub.add_argument("-o", "--output", help="file (default: stdout)")
            sub.add_argument("--status", help="only items with this status")
    listing = commands.add_parser("list", parents=[client_options], help="your batches")
    listing.add_argument("--page", type=int, default=1)
    listing.add_argument("--limit", type=int)
    listing.add_argument("--status")
    add_schedule_parser(commands, client_options)
    add_templates_parser(commands, client_options)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batchscraper", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="run a real batch against the bundled site")
    demo_parser.add_argument("--pages", type=int, default=50, help="product pages (default 50)")
    demo_parser.add_argument("--port", type=int, default=8000,
                             help="the example site's port (default 8000; a free one if taken)")
    llm_parser = commands.add_parser(
        "llm-server", help="the local LLM (llama.cpp + a small model): build, start, stop, status")
    llm_parser.add_argument("action", choices=("build", "start", "stop", "status"))
    _add_api_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo(args.pages, args.port)
    if args.command == "llm-server":
        from batchscraper.llm import local

        return local.main([args.action])
    if args.command == "serve":
        return serve(args.port, args.bind)
    try:
        return api_command(args)
    except OutputClosed:
        # nothing more can be shown; stdout's last flush at exit must not complain either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except BatchApiError as exc:
        sys.stderr.write(error_line(args.command, exc) + "\n")
        return EXIT_BAD_INPUT if 400 <= exc.status < 500 else 1
    except BatchError as exc:
        sys.stderr.write(error_line(args.command, exc) + "\n")
        return EXIT_BAD_INPUT
    except OSError as exc:
        sys.stderr.write(f"batchscraper {args.command}: cannot reach the API: {exc}\n")
        return 1
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())

