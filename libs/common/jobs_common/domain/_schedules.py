"""Recurring schedules: when a cron or interval job fires, and what the scheduler does at a tick.

Everything here is a pure function of its arguments (the clock is passed in), so the scheduler's
decisions are tested with fixed times instead of sleeps.

Cron expressions are the standard five fields (minute hour day-of-month month day-of-week) or a
macro (``@hourly`` …), evaluated in an IANA time zone with Debian cron's rules at DST changes
(through ``cronsim``): a job at a fixed local time that falls in the spring-forward gap runs once,
right after the gap; in the fall-back hour it runs once, at the first occurrence. Expressions
with a wildcard hour (``*/15 * * * *``) follow real time, so they keep their spacing through both.

Interval schedules fire every ``interval`` from an anchor: ``start_time`` when given (the first
run is at ``start_time``), else the job's creation time (the first run is one interval later).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

__all__ = [
    "CRON_MACROS",
    "MIN_INTERVAL",
    "CatchUpPolicy",
    "CronSpec",
    "OverlapPolicy",
    "RecurringSchedule",
    "TickPlan",
    "cron_error",
    "fire_times",
    "next_fire_time",
    "plan_due_ticks",
    "time_zone_error",
]

MIN_INTERVAL = timedelta(seconds=1)

CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class OverlapPolicy(enum.StrEnum):
    """What a tick does while an earlier execution of the job is unfinished."""

    SKIP = "SKIP"  # record the tick as SKIPPED
    ALLOW = "ALLOW"  # run concurrently
    BUFFER_ONE = "BUFFER_ONE"  # run once right after the unfinished one ends
    CANCEL_PREVIOUS = "CANCEL_PREVIOUS"  # cancel the unfinished ones, then run


class CatchUpPolicy(enum.StrEnum):
    """What the scheduler does with ticks it missed (it was down, or the job was overdue)."""

    SKIP_MISSED = "SKIP_MISSED"  # fire once, for the latest missed tick
    RUN_ALL = "RUN_ALL"  # fire each missed tick, the latest ``catch_up_limit`` of them


@dataclass(frozen=True, slots=True)
class CronSpec:
    expression: str
    time_zone: str = "UTC"

    @property
    def five_fields(self) -> str:
        return CRON_MACROS.get(self.expression.strip().lower(), self.expression)


@dataclass(frozen=True, slots=True)
class RecurringSchedule:
    """A validated recurring schedule: exactly one of ``cron`` and ``interval`` is set."""

    cron: CronSpec | None = None
    interval: timedelta | None = None
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    catch_up: CatchUpPolicy = CatchUpPolicy.SKIP_MISSED
    catch_up_limit: int = 1
    start_time: datetime | None = None
    end_time: datetime | None = None
    max_runs: int | None = None

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("exactly one of cron and interval must be set")


def cron_error(expression: str) -> str | None:
    """Why a cron expression is refused, or None when it is valid."""
    spec = CronSpec(expression)
    fields = spec.five_fields.split()
    if len(fields) != 5:
        return f"must have 5 fields (minute hour day-of-month month day-of-week) or be one of {', '.join(CRON_MACROS)}"
    try:
        next(CronSim(spec.five_fields, datetime(2000, 1, 1, tzinfo=UTC)))
    except CronSimError as exc:
        return str(exc)
    except StopIteration:
        return "never matches a date"
    return None


def time_zone_error(name: str) -> str | None:
    """Why a time zone name is refused, or None for a known IANA name."""
    if not name or name.startswith(("/", ".")) or ".." in name:
        return f"{name!r} is not an IANA time zone name"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)"
    return None


def fire_times(schedule: RecurringSchedule, after: datetime, anchor: datetime) -> Iterator[datetime]:
    """Fire times strictly after ``after``, in order, within the schedule's window.

    ``anchor`` is the job's creation time (interval schedules without a ``start_time`` count from
    it). Runs already counted against ``max_runs`` are the caller's to account for.
    """
    if schedule.start_time is not None and after < schedule.start_time:
        after = schedule.start_time - timedelta(microseconds=1)
    for tick in _raw_ticks_after(schedule, after, anchor):
        if schedule.end_time is not None and tick > schedule.end_time:
            return
        yield tick


def next_fire_time(schedule: RecurringSchedule, after: datetime, anchor: datetime) -> datetime | None:
    return next(fire_times(schedule, after, anchor), None)


@dataclass(frozen=True, slots=True)
class TickPlan:
    """The due ticks of one job at ``now`` and where its schedule goes next."""

    due: list[datetime] = field(default_factory=list)  # oldest first; the ones to fire
    missed: int = 0  # due ticks dropped by the catch-up policy (a lower bound for long gaps)
    next_run_time: datetime | None = None  # None: no tick left in the window


def plan_due_ticks(
    schedule: RecurringSchedule,
    next_run_time: datetime,
    now: datetime,
    anchor: datetime,
    runs_so_far: int,
) -> TickPlan:
    """The ticks in ``[next_run_time, now]`` to fire under the catch-up policy and run limit.

    ``next_run_time`` is the earliest tick not handled yet (itself a fire time). The latest due
    tick is always among those fired, so a job that was overdue runs for its most recent tick.
    """
    if next_run_time > now:
        return TickPlan(next_run_time=next_run_time)
    wanted = 1 if schedule.catch_up is CatchUpPolicy.SKIP_MISSED else max(schedule.catch_up_limit, 1)
    if schedule.max_runs is not None:
        wanted = min(wanted, schedule.max_runs - runs_so_far)
        if wanted <= 0:
            return TickPlan(next_run_time=None)
    latest = _latest_ticks(schedule, next_run_time, now, anchor, limit=wanted + 1)
    due = list(reversed(latest[:wanted]))
    missed = 0 if len(latest) <= wanted else _count_hint(schedule, next_run_time, now, wanted)
    # Whether max_runs ends the schedule depends on how many of these actually run (the overlap
    # policy may skip some): the caller decides that.
    return TickPlan(due=due, missed=missed, next_run_time=next_fire_time(schedule, now, anchor))


def _count_hint(schedule: RecurringSchedule, first: datetime, now: datetime, fired: int) -> int:
    """How many due ticks were not fired: exact for intervals, a lower bound (1) for cron."""
    if schedule.interval is not None:
        total = math.floor((now - first) / schedule.interval) + 1
        return max(total - fired, 0)
    return 1


def _latest_ticks(
    schedule: RecurringSchedule, earliest: datetime, now: datetime, anchor: datetime, limit: int
) -> list[datetime]:
    """Up to ``limit`` ticks in ``[earliest, now]``, newest first, within the window."""
    if schedule.end_time is not None and now > schedule.end_time:
        now = schedule.end_time
    ticks: list[datetime] = []
    for tick in _raw_ticks_at_or_before(schedule, now, anchor):
        if tick < earliest or len(ticks) >= limit:
            break
        if schedule.start_time is not None and tick < schedule.start_time:
            break
        ticks.append(tick)
    return ticks


def _raw_ticks_after(schedule: RecurringSchedule, after: datetime, anchor: datetime) -> Iterator[datetime]:
    if schedule.interval is not None:
        origin, first_k = _interval_origin(schedule, anchor)
        k = max(math.floor((after - origin) / schedule.interval) + 1, first_k)
        while True:
            yield origin + k * schedule.interval
            k += 1
    assert schedule.cron is not None
    zone = ZoneInfo(schedule.cron.time_zone)
    try:
        for tick in CronSim(schedule.cron.five_fields, after.astimezone(zone)):
            yield tick.astimezone(UTC)
    except StopIteration:  # cronsim gives up after 50 years without a match
        return


def _raw_ticks_at_or_before(schedule: RecurringSchedule, moment: datetime, anchor: datetime) -> Iterator[datetime]:
    if schedule.interval is not None:
        origin, first_k = _interval_origin(schedule, anchor)
        k = math.floor((moment - origin) / schedule.interval)
        while k >= first_k:
            yield origin + k * schedule.interval
            k -= 1
        return
    assert schedule.cron is not None
    zone = ZoneInfo(schedule.cron.time_zone)
    # cronsim yields ticks strictly before its start unless the start carries microseconds, in
    # which case the whole second counts: start just after the second ``moment`` falls in.
    start = moment.replace(microsecond=0) + timedelta(microseconds=1)
    try:
        for tick in CronSim(schedule.cron.five_fields, start.astimezone(zone), reverse=True):
            yield tick.astimezone(UTC)
    except StopIteration:
        return


def _interval_origin(schedule: RecurringSchedule, anchor: datetime) -> tuple[datetime, int]:
    """The origin of an interval's ticks and the first tick's index: start_time counts as a
    tick; a job without one first fires one interval after its creation."""
    if schedule.start_time is not None:
        return schedule.start_time, 0
    return anchor, 1
