"""Ticks of a schedule: cron lines parsed by cronsim, time zones and DST by zoneinfo.

A tick is a wall-clock time in the schedule's zone that matches the cron
line, kept as a UTC instant. cronsim follows the zone's rules: a daily
``30 2 * * *`` in Europe/Berlin fires once at 03:00 on the spring-forward
day (02:30 does not exist) and once, at the first 02:30, on the fall-back
day; an hourly or finer line fires on each real hour of the repeated one.
"""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass

from cronsim import CronSim, CronSimError

MINUTE_FIELDS = 5
SECOND_FIELDS = 6  # a seconds field first (test setups: BATCH_SCHEDULE_SECONDS_FIELD)
MAX_CRON_CHARS = 200
MAX_COUNTED_TICKS = 100_000  # ticks counted between two instants (how many were missed)


@dataclass(frozen=True)
class Timing:
    """A checked cron line in a time zone."""

    cron: str
    zone: zoneinfo.ZoneInfo

    def ticks_after(self, instant: dt.datetime) -> Iterator[dt.datetime]:
        """The ticks strictly after ``instant`` (aware), as UTC instants, in order."""
        local = instant.astimezone(self.zone).replace(microsecond=0)
        for tick in CronSim(self.cron, local):
            yield tick.astimezone(dt.UTC)

    def next_after(self, instant: dt.datetime) -> dt.datetime:
        """The first tick strictly after ``instant``."""
        return next(self.ticks_after(instant))

    def count_between(self, start: dt.datetime, end: dt.datetime) -> int:
        """How many ticks fall in (start, end] (capped at ``MAX_COUNTED_TICKS``)."""
        ticks = itertools.islice(self.ticks_after(start), MAX_COUNTED_TICKS)
        return sum(1 for _ in itertools.takewhile(lambda tick: tick <= end, ticks))


def parse_cron(expr: object, *, seconds_field: bool = False) -> str:
    """A cron line of 5 fields (6 with a leading seconds field when allowed); ValueError."""
    if not isinstance(expr, str) or not expr.strip():
        raise ValueError("a cron line such as '0 3 * * *' (minute hour day month weekday)")
    if len(expr) > MAX_CRON_CHARS:
        raise ValueError(f"at most {MAX_CRON_CHARS} characters")
    line = " ".join(expr.split())
    fields = len(line.split(" "))
    allowed = (MINUTE_FIELDS, SECOND_FIELDS) if seconds_field else (MINUTE_FIELDS,)
    if fields not in allowed:
        raise ValueError(f"{fields} fields; a cron line has 5 (minute hour day month weekday)")
    try:
        ticks = CronSim(line, dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
        next(ticks)  # a line that can never match (30 February) fails here
    except (CronSimError, StopIteration) as exc:
        raise ValueError(str(exc) or "this cron line never matches") from None
    return line


def parse_timezone(name: object) -> zoneinfo.ZoneInfo:
    """An IANA time zone name (``Europe/Berlin``, ``UTC``); ValueError for anything else."""
    if not isinstance(name, str) or not name or len(name) > 64 or name.startswith(("/", ".")):
        raise ValueError("an IANA time zone name such as 'Europe/Berlin' or 'UTC'")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name[:64]!r}") from None
