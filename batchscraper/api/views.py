"""How batches and items look in API responses (MongoDB documents -> JSON bodies)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import cast

from batchscraper.jsontypes import Document
from batchscraper.store import ITEM_STATUSES
from batchscraper.store.base import document_id
from batchscraper.store.storable import readable_record
from batchscraper.webhooks import batch_links

DONE_STATUSES = ("completed", "failed", "cancelled")
HIDDEN_ITEM_FIELDS = ("_id", "lease", "duplicates")


def json_default(value: object) -> str:
    """JSON for what MongoDB documents hold besides plain JSON: datetimes."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def progress(counters: Mapping[str, int]) -> dict[str, int | float]:
    """Finished items (completed, failed or cancelled) out of the total, and the percentage."""
    total = counters.get("total", 0)
    done = sum(counters.get(status, 0) for status in DONE_STATUSES)
    percent = round(100.0 * done / total, 1) if total else 100.0
    return {"done": done, "total": total, "percent": percent}


def pagination(page: int, limit: int, total: int) -> dict[str, int]:
    return {"page": page, "limit": limit, "total": total, "total_pages": math.ceil(total / limit)}


def batch_summary(batch: Document, base: str = "") -> dict[str, object]:
    """A batch in lists and in the 202 answer: status, counters, progress, times, links."""
    # a batch stored before an item status existed has no counter for it
    counters: dict[str, int] = {
        **dict.fromkeys(ITEM_STATUSES, 0), **cast("dict[str, int]", batch["counters"])
    }
    return {
        "batch_id": batch["_id"],
        "owner": batch.get("owner"),
        "name": batch.get("name"),
        "tags": batch.get("tags") or [],
        "status": batch["status"],
        "total": counters["total"],
        "overview": batch.get("overview"),
        "counters": counters,
        "progress": progress(counters),
        "created_at": batch["created_at"],
        "started_at": batch.get("started_at"),
        "finished_at": batch.get("finished_at"),
        "expires_at": batch.get("expires_at"),
        "links": batch_links(document_id(batch), base),
    }


def batch_detail(
    batch: Document, active_jobs: list[str], base: str = "", timeline: bool = False
) -> dict[str, object]:
    """A batch's state with its inputs (schema, prompt, options)."""
    return {
        **batch_state(batch, active_jobs, base, timeline),
        "schema": batch.get("schema"),
        "prompt": batch.get("prompt"),
        "options": batch.get("options"),
        "monitor_rules": batch.get("monitor_rules"),
    }


def batch_state(
    batch: Document, active_jobs: list[str], base: str = "", timeline: bool = False
) -> dict[str, object]:
    """What changes while a batch runs: counters, failures, domains, jobs, error and webhook
    deliveries (never the secret). What a poll reads (``limit=0``). ``timeline``: add the
    items finished per minute (``{"<minutes since 1970>": n}``)."""
    webhook = cast("Document | None", batch.get("webhook"))
    failures = cast("dict[str, int]", batch.get("failures") or {})
    jobs = cast("list[Document]", batch.get("jobs", []))
    extra = {"timeline": batch.get("timeline") or {}} if timeline else {}
    return {
        **extra,
        **batch_summary(batch, base),
        "error": batch.get("error"),
        "rerun_of": batch.get("rerun_of"),
        "schedule": schedule_of_run(batch),
        "compare_to": cast("Document", batch.get("compare") or {}).get("to"),
        "changes": batch.get("changes"),  # items per change status, when it compares
        "monitors": batch.get("monitors"),  # each monitor's result once the batch ended
        # (> 0: a batch finished before failures were counted goes negative when retried)
        "failures": {code: n for code, n in failures.items() if n > 0},
        "domains": batch.get("domains", []),
        "templates": batch.get("templates") or {},  # per learned template: its pages here
        "jobs": [
            {**job, "active": job["id"] in active_jobs} for job in jobs
        ],
        "webhook": {
            "url": webhook["url"],
            "events": webhook.get("events") or ["batch.completed"],
            "metadata": webhook.get("metadata"),
            "status": webhook.get("status"),
            "deliveries": webhook.get("deliveries", []),
        }
        if webhook
        else None,
    }


def item_record(doc: Document) -> dict[str, object]:
    """One item's record with its keys as extracted, without the store's bookkeeping fields."""
    record = readable_record(doc)
    return {key: value for key, value in record.items() if key not in HIDDEN_ITEM_FIELDS}


def schedule_of_run(batch: Document) -> dict[str, object] | None:
    """Which schedule made the batch, for which tick and how (tick or manual)."""
    schedule = cast("Document | None", batch.get("schedule"))
    if not schedule:
        return None
    return {"id": schedule["id"], "tick": schedule.get("tick"), "trigger": schedule["trigger"]}
