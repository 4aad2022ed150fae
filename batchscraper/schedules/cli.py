"""``batchscraper schedule add|list|show|pause|resume|rm|run``: schedules through the HTTP API."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import cast

from batchscraper.batchargs import add_batch_arguments, batch_body, one_error
from batchscraper.client import BatchClient, MonitorOutcome, Schedule
from batchscraper.exceptions import BatchInputError
from batchscraper.jsontypes import JSONObject

ACTIONS = ("add", "list", "show", "pause", "resume", "rm", "run")


def add_schedule_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                        client_options: argparse.ArgumentParser) -> None:
    """The ``schedule`` subcommand and its actions."""
    schedule = commands.add_parser(
        "schedule", help="schedules: add, list, show, pause, resume, rm, run")
    actions = schedule.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", parents=[client_options], help="a new schedule")
    add.add_argument("--cron", required=True, help="'0 3 * * *' (minute hour day month weekday)")
    add.add_argument("--timezone", help="IANA zone, e.g. Europe/Berlin (default UTC)")
    add.add_argument("--name")
    add.add_argument("--catch-up", choices=("one", "none"))
    add.add_argument("--overlap", choices=("skip", "queue"))
    add.add_argument("--paused", action="store_true", help="store it disabled")
    add.add_argument("--from", dest="rerun_of", metavar="BATCH_ID",
                     help="each run re-runs this batch's inputs")
    # as submit's; without --compare-to each run compares with the schedule's previous run
    add_batch_arguments(add)
    listing = actions.add_parser("list", parents=[client_options], help="your schedules")
    listing.add_argument("--page", type=int, default=1)
    listing.add_argument("--limit", type=int)
    for action, text in (("show", "a schedule and its last runs"), ("pause", "stop its ticks"),
                         ("resume", "ticks again, from now"), ("rm", "delete it (runs stay)"),
                         ("run", "a run now")):
        sub = actions.add_parser(action, parents=[client_options], help=text)
        sub.add_argument("schedule_id")


def schedule_command(
    client: BatchClient,
    args: argparse.Namespace,
    out: Callable[[str], None],
    monitors_text: Callable[[list[MonitorOutcome]], str],
) -> int:
    """Run one ``schedule`` action; the helpers are the CLI's own (a line of output, a line
    of monitor results)."""
    if args.action == "add":
        created = client.create_schedule(
            args.cron, _template(args), name=args.name,
            timezone=args.timezone, catch_up=args.catch_up, overlap=args.overlap,
            enabled=False if args.paused else None,
        )
        out(json.dumps(created, indent=2))
    elif args.action == "list":
        listing = client.list_schedules(page=args.page, limit=args.limit)
        for schedule in listing["schedules"]:
            out(schedule_line(schedule))
        pages = listing["pagination"]
        out(f"page {pages['page']}/{pages['total_pages']}, {pages['total']} schedules"
            if pages["total"] else "no schedules")
    elif args.action == "show":
        shown = client.get_schedule(args.schedule_id)
        out(json.dumps(shown, indent=2))
        last = shown.get("last_run") or {}
        for run in client.schedule_runs(args.schedule_id, limit=5)["runs"]:
            line = (f"  {run['batch_id']}  {run['status']:<9} {run['schedule']['trigger']:<6} "
                    f"tick={run['schedule']['tick'] or '-'}  created={run['created_at']}")
            if run["batch_id"] == last.get("batch_id") and last.get("monitors"):
                line += f"  monitors: {monitors_text(last['monitors'])}"
            out(line)
    elif args.action in ("pause", "resume"):
        changed = client.update_schedule(args.schedule_id, enabled=args.action == "resume")
        out(schedule_line(changed))
    elif args.action == "rm":
        client.delete_schedule(args.schedule_id)
        out(f"{args.schedule_id} deleted")
    elif args.action == "run":
        out(json.dumps(client.run_schedule(args.schedule_id), indent=2))
    return 0


def schedule_line(schedule: Schedule) -> str:
    """One line per schedule: id, state, cron and zone, next run, last run and its status."""
    last = schedule.get("last_run") or {}
    state = "enabled" if schedule["enabled"] else "paused"
    counters = schedule["counters"]
    return (f"{schedule['schedule_id']}  {state:<7} {schedule['cron']!r} {schedule['timezone']}  "
            f"next={schedule.get('next_run_at') or '-'}  "
            f"last={last.get('batch_id') or '-'} {last.get('status') or ''}  "
            f"runs={counters['runs']} skipped={counters['skipped']} missed={counters['missed']}"
            + (f"  name={schedule['name']!r}" if schedule.get("name") else ""))


def _template(args: argparse.Namespace) -> JSONObject:
    """The batch each run makes: ``--from`` a batch, or URLs and a schema (as ``submit``),
    with its webhook, monitors and comparison settings."""
    problems = []
    if bool(args.rerun_of) == bool(args.urls):
        problems.append(BatchInputError("give --from BATCH_ID or --urls (with --schema), "
                                        "not both"))
    try:
        template = batch_body(args)
    except BatchInputError as exc:
        problems.append(exc)
    if problems:
        raise one_error(problems)
    body = cast(JSONObject, template)  # a BatchBody is a JSON object
    if args.rerun_of:
        body["rerun_of"] = args.rerun_of
    return body
