"""Schedules as the API's callers see them, scoped to their owner (blocking: call from a thread).

A schedule is stored only when every part of it is usable: its cron line and
time zone, its policies, and its batch template checked as ``POST /batches``
would check it (URLs, schema, options, webhook target; ``rerun_of`` must be
a batch of the caller's: another owner's is 403, an unknown one a problem
of the 422).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import cast

from batchscraper.api.auth import Caller
from batchscraper.api.service import BatchService
from batchscraper.api.submit import Submission
from batchscraper.exceptions import (
    BatchInputError,
    BatchNotFoundError,
    ForbiddenError,
    InvalidWebhookError,
)
from batchscraper.jsontypes import Document, JSONObject
from batchscraper.schedules.scheduler import Scheduler, timing_of
from batchscraper.schedules.spec import (
    Problem,
    ScheduleInput,
    read_schedule,
    schedule_problems,
    template_problems,
)
from batchscraper.schedules.store import ScheduleDocument, ScheduleStore, new_schedule_id
from batchscraper.webhooks import check_webhook_target

SCHEDULE_ID = re.compile(r"s_[0-9a-f]{32}")
TIMING_FIELDS = ("cron", "timezone", "enabled")


class ScheduleService:
    """Create, read, change, delete and run schedules."""

    def __init__(self, store: ScheduleStore, scheduler: Scheduler, batches: BatchService) -> None:
        self.store = store
        self.scheduler = scheduler
        self.batches = batches

    @property
    def seconds_field(self) -> bool:
        return self.scheduler.config.seconds_field

    def create(self, caller: Caller, body: object) -> tuple[ScheduleDocument, str | None]:
        """Store a schedule; (its document, the webhook secret if one was generated)."""
        given = read_schedule(body, seconds_field=self.seconds_field)
        template, secret = self._checked_template(caller, given)
        now = self.scheduler.clock()
        doc = cast(ScheduleDocument, {  # given.fields: all of them (a POST's, defaults applied)
            "_id": new_schedule_id(),
            "owner": caller.owner,
            **given.fields,
            "batch": template,
            "created_at": now,
            "updated_at": now,
            "last_run": None,
            "last_error": None,
            "counters": {"runs": 0, "skipped": 0, "missed": 0, "failed": 0},
        })
        doc["next_run_at"] = timing_of(doc).next_after(now) if doc["enabled"] else None
        self.store.insert(doc)
        return doc, secret

    def get(self, caller: Caller, schedule_id: str) -> ScheduleDocument:
        """The schedule, if it exists (404) and is the caller's (403)."""
        if not SCHEDULE_ID.fullmatch(schedule_id):
            raise BatchNotFoundError(f"no schedule {schedule_id[:80]!r}")
        doc = self.store.get(schedule_id)
        if not caller.owns(doc):
            raise ForbiddenError(f"schedule {schedule_id} belongs to another API key")
        return doc

    def page(self, caller: Caller, page: int, limit: int) -> tuple[list[ScheduleDocument], int]:
        return self.store.page(caller.owner_query(), page, limit)

    def update(self, caller: Caller, schedule_id: str, body: object
               ) -> tuple[ScheduleDocument, str | None]:
        """Change some fields; a new cron line, zone or resume counts ticks from now."""
        current = self.get(caller, schedule_id)
        given = read_schedule(body, seconds_field=self.seconds_field, partial=True)
        template, secret = self._checked_template(caller, given)
        now = self.scheduler.clock()
        changes: Document = {**given.fields, "updated_at": now}
        if template is not None:
            changes["batch"] = template
        update: dict[str, Document] = {"$set": changes}
        before: Mapping[str, object] = current
        merged: Document = {**before, **changes}
        timing_changed = any(merged[name] != before[name] for name in TIMING_FIELDS)
        # paused, it keeps the tick it waited for (what was handled ends there); resumed or
        # retimed, it counts ticks from now: those while paused are neither run nor missed
        if merged["enabled"] and (timing_changed or current.get("next_run_at") is None):
            changes["next_run_at"] = timing_of(merged).next_after(now)
            update["$unset"] = {"held_tick": ""}
        return self.store.change(schedule_id, update), secret

    def delete(self, caller: Caller, schedule_id: str) -> ScheduleDocument:
        """Remove the schedule; the batches it made stay."""
        doc = self.get(caller, schedule_id)
        self.store.delete(schedule_id)
        return doc

    def run_now(self, caller: Caller, schedule_id: str) -> Document:
        """A batch from the schedule's template now, whatever its ticks, pause or overlap."""
        doc = self.get(caller, schedule_id)
        batch = self.scheduler.make_run(doc, "manual", None, None)
        self.scheduler.record_manual_run(doc, batch)
        return batch

    def runs(
        self, caller: Caller, schedule_id: str, page: int, limit: int
    ) -> tuple[list[Document], int]:
        self.get(caller, schedule_id)
        return self.store.runs(schedule_id, page, limit)

    def last_run_states(self, docs: list[ScheduleDocument]) -> dict[str, Document]:
        """The status and counters of each schedule's last run, by batch id."""
        states: dict[str, Document] = {}
        for doc in docs:
            last_run = doc.get("last_run")
            batch_id = last_run["batch_id"] if last_run else None
            state = self.store.batch_status(batch_id) if batch_id else None
            if state is not None:
                states[str(batch_id)] = state
        return states

    def _checked_template(
        self, caller: Caller, given: ScheduleInput
    ) -> tuple[JSONObject | None, str | None]:
        """The template to store (with its webhook secret) or 422 with every problem."""
        problems = list(given.problems)
        if given.submission is not None:
            problems += self._template_problems(caller, given.submission)
        if problems:
            raise schedule_problems(problems)
        if given.template is None or given.submission is None:
            return None, None
        template = {k: v for k, v in given.template.items() if k not in ("webhook_url",)}
        webhook = given.submission.webhook
        if webhook is None:
            return template, None
        options = cast(JSONObject, webhook.options())  # events, metadata: JSON as given
        template["webhook"] = {"url": webhook.url, "secret": webhook.secret, **options}
        return template, webhook.secret if webhook.generated else None

    def _template_problems(self, caller: Caller, submission: Submission) -> list[Problem]:
        """What ``POST /batches`` would refuse in the template (403 for another's rerun_of)."""
        problems: list[Problem] = []
        try:
            self.batches._spec(caller, submission)  # the very checks of POST /batches
        except BatchNotFoundError as exc:
            problems.append({"field": "batch.rerun_of", "code": exc.code, "message": exc.message})
        except BatchInputError as exc:
            problems += template_problems(exc)
        if submission.webhook is not None:
            try:
                check_webhook_target(submission.webhook.url, self.batches.config.webhook_policy)
            except InvalidWebhookError as exc:
                problems += template_problems(exc, "webhook")
        return problems
