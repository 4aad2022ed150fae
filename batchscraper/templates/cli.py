"""``batchscraper templates list|show|rm``: learned templates through the HTTP API."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from batchscraper.client import BatchClient, Template
from batchscraper.templates.store import STATUSES


def add_templates_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                         client_options: argparse.ArgumentParser) -> None:
    """The ``templates`` subcommand and its actions."""
    templates = commands.add_parser("templates", help="learned templates: list, show, rm")
    actions = templates.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", parents=[client_options], help="your templates")
    listing.add_argument("--page", type=int, default=1)
    listing.add_argument("--limit", type=int)
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--host", help="only this host (name[:port])")
    listing.add_argument("--batch", dest="batch_id", metavar="BATCH_ID",
                         help="only those this batch used or learned")
    for action, text in (("show", "a template: selectors, samples, hits, audits"),
                         ("rm", "delete it (its pages are learned again)")):
        sub = actions.add_parser(action, parents=[client_options], help=text)
        sub.add_argument("template_id")


def templates_command(client: BatchClient, args: argparse.Namespace,
                      out: Callable[[str], None]) -> int:
    """Run one ``templates`` action; ``out`` is the CLI's own output."""
    if args.action == "list":
        answer = client.list_templates(page=args.page, limit=args.limit, status=args.status,
                                       host=args.host, batch_id=args.batch_id)
        for template in answer["templates"]:
            out(template_line(template))
        pages = answer["pagination"]
        out(f"page {pages['page']}/{pages['total_pages']}, {pages['total']} templates"
            if pages["total"] else "no templates")
    elif args.action == "show":
        out(json.dumps(client.get_template(args.template_id), indent=2, ensure_ascii=False))
    elif args.action == "rm":
        client.delete_template(args.template_id)
        out(f"{args.template_id} deleted")
    return 0


def template_line(template: Template) -> str:
    """One line per template: id, status, host and version, hits and hit rate, audits."""
    def share(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    return (f"{template['template_id']}  {template['status']:<9} {template['host']} "
            f"v{template['version']}  hits={template['hits']} misses={template['misses']} "
            f"hit_rate={share(template['hit_rate'])}  audits={template['audits']} "
            f"accuracy={share(template['accuracy'])}  fields={','.join(template['fields'])}")
