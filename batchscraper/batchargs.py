"""The command-line arguments ``submit`` and ``schedule add`` share, read into a batch body.

What they give is what ``POST /batches`` takes (a schedule's template is such a
body): URLs, schema, prompt, options, the webhook with its ``events`` and
``metadata``, ``monitors``, ``compare_to`` and ``ignore_fields``. JSON values
come inline or as ``@file``. The problems found here (unreadable files,
invalid JSON, webhook settings without ``--webhook-url``) are reported
together, as one :class:`BatchInputError`, before any request; the values
themselves are checked by the API, which refuses them with every problem
listed (422 ``INVALID_WEBHOOK``, ``INVALID_MONITORS``, ``INVALID_COMPARE``...).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TypedDict, cast

from batchscraper.events import EVENT_TYPES
from batchscraper.exceptions import BatchInputError
from batchscraper.inputs import Limits, parse_urls
from batchscraper.inputs.profiles import PROFILE_PREFIX
from batchscraper.jsontypes import JSONObject, JSONValue
from batchscraper.monitors import RULES

WEBHOOK_OPTIONS = ("webhook_secret", "webhook_event", "webhook_metadata")


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """``--urls``, ``--schema``, ``--prompt``, ``--options`` and :func:`add_watch_arguments`."""
    parser.add_argument("--urls", help="as -a urls=: a,b / @urls.txt|.json|.jsonl|.csv / JSON")
    parser.add_argument("--schema", help="JSON Schema or field list, inline or @file")
    parser.add_argument("--prompt")
    parser.add_argument("--options", help="JSON object, inline or @file")
    add_watch_arguments(parser)


def add_watch_arguments(parser: argparse.ArgumentParser) -> None:
    """What a run reports and is judged by: webhook and its events, monitors, comparison."""
    parser.add_argument("--webhook-url")
    parser.add_argument("--webhook-secret", help="whsec_...; generated (and shown) if omitted")
    parser.add_argument("--webhook-event", action="append", metavar="EVENT",
                        help=f"an event to send; repeat for more: {', '.join(EVENT_TYPES)} "
                             "(default: batch.completed)")
    parser.add_argument("--webhook-metadata", metavar="JSON",
                        help="a JSON object (inline or @file) echoed in every webhook payload")
    parser.add_argument("--monitors", metavar="JSON",
                        help=f"a JSON object (inline or @file) of {', '.join(RULES)}")
    parser.add_argument("--compare-to", metavar="BATCH_ID", help="each item's change against it")
    parser.add_argument("--ignore-field", action="append", help="left out of the comparison")


class BatchBody(TypedDict, total=False):
    """A ``POST /batches`` body's inputs, as :meth:`BatchClient.submit` takes them."""

    urls: list[JSONValue]
    schema: JSONValue
    prompt: str
    options: JSONObject
    webhook: JSONObject
    monitors: JSONObject
    compare_to: str
    ignore_fields: list[str]


def batch_body(args: argparse.Namespace) -> BatchBody:
    """The batch body the arguments give: only what was given, with ``POST /batches`` keys.

    Raises one :class:`BatchInputError` naming every problem found on this side (with their
    code when they all have one, e.g. ``INVALID_URL``; else each after its own code).
    """
    problems: list[BatchInputError] = []

    def read(value: str | None, name: str) -> JSONValue:
        try:
            return json_arg(value, name)
        except BatchInputError as exc:
            problems.append(exc)
            return None

    body: JSONObject = {}  # every key of BatchBody, None where not given
    if args.urls:
        try:
            body["urls"] = url_entries(args.urls)
        except BatchInputError as exc:
            problems.append(exc)
    body.update(schema=read(args.schema, "schema"), prompt=args.prompt,
                options=read(args.options, "options"), monitors=read(args.monitors, "monitors"),
                compare_to=args.compare_to, ignore_fields=args.ignore_field)
    metadata = read(args.webhook_metadata, "webhook-metadata")
    if args.webhook_url:
        body["webhook"] = {key: value for key, value in (
            ("url", args.webhook_url), ("secret", args.webhook_secret),
            ("events", args.webhook_event), ("metadata", metadata)) if value is not None}
    else:
        given = [f"--{name.replace('_', '-')}" for name in WEBHOOK_OPTIONS
                 if getattr(args, name) is not None]
        if given:
            problems.append(BatchInputError(f"{', '.join(given)}: need --webhook-url"))
    if problems:
        raise one_error(problems)
    return cast(BatchBody, {key: value for key, value in body.items() if value is not None})


def one_error(problems: list[BatchInputError]) -> BatchInputError:
    """Several problems as one error, each message kept."""
    codes = {problem.code for problem in problems}
    if len(codes) == 1:
        return BatchInputError("; ".join(p.message for p in problems), code=codes.pop())
    return BatchInputError("; ".join(str(problem) for problem in problems))


def json_arg(value: str | None, name: str) -> JSONValue:
    """A JSON argument given inline or as ``@file``."""
    if value is None:
        return None
    if name == "schema" and value.strip().lower().startswith(PROFILE_PREFIX):
        return value.strip()  # a built-in schema, resolved by the API like by `scrapy crawl`
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise BatchInputError(f"{name}: cannot read {value[1:]}: {exc.strerror}") from None
    try:
        value_read: JSONValue = json.loads(text)
        return value_read
    except json.JSONDecodeError as exc:
        raise BatchInputError(f"{name}: not valid JSON: {exc.msg}") from None


def url_entries(raw: str) -> list[JSONValue]:
    """URLs as ``-a urls=`` takes them, parsed by the shared parser, as JSON entries."""
    entries: list[JSONValue] = []
    for spec in parse_urls(raw, Limits(max_urls=sys.maxsize, read_files=True)):
        entry = {key: value for key, value in asdict(spec).items() if value is not None}
        entry.update(entry.pop("browser", None) or {})
        entries.append(entry if len(entry) > 1 else spec.url)
    return entries
