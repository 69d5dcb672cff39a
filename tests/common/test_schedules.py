"""Cron and interval fire times, DST rules and catch-up plans, with fixed clocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

import pytest

from jobs_common.domain import (
    CatchUpPolicy,
    CronSpec,
    RecurringSchedule,
    cron_error,
    fire_times,
    plan_due_ticks,
    time_zone_error,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)


def cron(expression: str, time_zone: str = "UTC", **kwargs: object) -> RecurringSchedule:
    return RecurringSchedule(cron=CronSpec(expression, time_zone), **kwargs)  # type: ignore[arg-type]


def local_times(schedule: RecurringSchedule, after: datetime, zone: ZoneInfo, count: int) -> list[str]:
    return [t.astimezone(zone).strftime("%m-%d %H:%M %Z") for t in islice(fire_times(schedule, after, ANCHOR), count)]


def test_cron_fires_at_matching_minutes_in_its_time_zone() -> None:
    schedule = cron("30 9 * * 1-5", "Europe/Berlin")
    after = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)  # a Friday
    assert local_times(schedule, after, BERLIN, 3) == ["11-30 09:30 CET", "12-01 09:30 CET", "12-02 09:30 CET"]


@pytest.mark.parametrize(
    ("macro", "expected_utc"),
    [
        ("@hourly", datetime(2026, 3, 1, 11, 0, tzinfo=UTC)),
        ("@daily", datetime(2026, 3, 2, 0, 0, tzinfo=UTC)),
        ("@weekly", datetime(2026, 3, 8, 0, 0, tzinfo=UTC)),
        ("@monthly", datetime(2026, 4, 1, 0, 0, tzinfo=UTC)),
        ("@yearly", datetime(2027, 1, 1, 0, 0, tzinfo=UTC)),
    ],
)
def test_macros(macro: str, expected_utc: datetime) -> None:
    after = datetime(2026, 3, 1, 10, 15, tzinfo=UTC)  # a Sunday
    assert next(fire_times(cron(macro), after, ANCHOR)) == expected_utc


def test_spring_forward_berlin_runs_a_gap_time_once_right_after_the_gap() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    schedule = cron("30 2 * * *", "Europe/Berlin")
    after = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
    assert local_times(schedule, after, BERLIN, 3) == ["03-28 02:30 CET", "03-29 03:00 CEST", "03-30 02:30 CEST"]


def test_fall_back_berlin_does_not_run_twice() -> None:
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    schedule = cron("30 2 * * *", "Europe/Berlin")
    after = datetime(2026, 10, 23, 12, 0, tzinfo=UTC)
    assert local_times(schedule, after, BERLIN, 3) == ["10-24 02:30 CEST", "10-25 02:30 CEST", "10-26 02:30 CET"]


def test_spring_forward_new_york() -> None:
    # 2026-03-08: 02:00 EST jumps to 03:00 EDT.
    schedule = cron("30 2 * * *", "America/New_York")
    after = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)
    assert local_times(schedule, after, NEW_YORK, 3) == ["03-07 02:30 EST", "03-08 03:00 EDT", "03-09 02:30 EDT"]


def test_fall_back_new_york_does_not_run_twice() -> None:
    # 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    schedule = cron("30 1 * * *", "America/New_York")
    after = datetime(2026, 10, 30, 12, 0, tzinfo=UTC)
    assert local_times(schedule, after, NEW_YORK, 3) == ["10-31 01:30 EDT", "11-01 01:30 EDT", "11-02 01:30 EST"]


def test_wildcard_hour_expressions_keep_real_time_spacing_through_fall_back() -> None:
    schedule = cron("*/30 * * * *", "America/New_York")
    after = datetime(2026, 11, 1, 5, 10, tzinfo=UTC)  # 01:10 EDT
    ticks = list(islice(fire_times(schedule, after, ANCHOR), 4))
    assert [b - a for a, b in pairwise(ticks)] == [timedelta(minutes=30)] * 3
    assert local_times(schedule, after, NEW_YORK, 4) == [
        "11-01 01:30 EDT",
        "11-01 01:00 EST",
        "11-01 01:30 EST",
        "11-01 02:00 EST",
    ]


def test_interval_counts_from_start_time_or_creation() -> None:
    start = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    with_start = RecurringSchedule(interval=timedelta(seconds=90), start_time=start)
    assert list(islice(fire_times(with_start, start - timedelta(days=1), ANCHOR), 2)) == [
        start,
        start + timedelta(seconds=90),
    ]
    without = RecurringSchedule(interval=timedelta(minutes=10))
    assert next(fire_times(without, ANCHOR, ANCHOR)) == ANCHOR + timedelta(minutes=10)


def test_window_bounds_fire_times() -> None:
    start = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    schedule = cron("0 * * * *", start_time=start, end_time=start + timedelta(hours=2))
    assert list(fire_times(schedule, ANCHOR, ANCHOR)) == [start + timedelta(hours=h) for h in range(3)]


def test_skip_missed_fires_only_the_latest_missed_tick() -> None:
    schedule = cron("*/5 * * * *")
    first = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    now = datetime(2026, 5, 1, 13, 2, 7, tzinfo=UTC)  # down for an hour
    plan = plan_due_ticks(schedule, first, now, ANCHOR, runs_so_far=0)
    assert plan.due == [datetime(2026, 5, 1, 13, 0, tzinfo=UTC)]
    assert plan.missed >= 1
    assert plan.next_run_time == datetime(2026, 5, 1, 13, 5, tzinfo=UTC)


def test_run_all_fires_the_latest_missed_ticks_up_to_the_bound_oldest_first() -> None:
    schedule = RecurringSchedule(
        interval=timedelta(minutes=5), catch_up=CatchUpPolicy.RUN_ALL, catch_up_limit=4, start_time=ANCHOR
    )
    now = ANCHOR + timedelta(hours=1, seconds=3)
    plan = plan_due_ticks(schedule, ANCHOR, now, ANCHOR, runs_so_far=0)
    assert plan.due == [ANCHOR + timedelta(minutes=m) for m in (45, 50, 55, 60)]
    assert plan.missed == 9  # 13 ticks were due
    assert plan.next_run_time == ANCHOR + timedelta(minutes=65)


def test_a_tick_exactly_at_now_is_due() -> None:
    schedule = cron("* * * * *")
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    plan = plan_due_ticks(schedule, now, now, ANCHOR, runs_so_far=0)
    assert plan.due == [now]
    assert plan.next_run_time == now + timedelta(minutes=1)


def test_max_runs_caps_the_due_ticks() -> None:
    schedule = RecurringSchedule(
        interval=timedelta(seconds=10), catch_up=CatchUpPolicy.RUN_ALL, catch_up_limit=10, start_time=ANCHOR, max_runs=3
    )
    plan = plan_due_ticks(schedule, ANCHOR, ANCHOR + timedelta(seconds=35), ANCHOR, runs_so_far=1)
    assert plan.due == [ANCHOR + timedelta(seconds=20), ANCHOR + timedelta(seconds=30)]


def test_end_time_ends_the_schedule() -> None:
    end = ANCHOR + timedelta(minutes=2)
    schedule = cron("* * * * *", start_time=ANCHOR, end_time=end)
    plan = plan_due_ticks(schedule, end, end + timedelta(seconds=5), ANCHOR, runs_so_far=2)
    assert plan.due == [end]
    assert plan.next_run_time is None


@pytest.mark.parametrize("expression", ["* * * *", "61 * * * *", "* * 32 * *", "@often", "a b c d e", "* * 31 2 *"])
def test_bad_cron_expressions_are_explained(expression: str) -> None:
    assert cron_error(expression)


@pytest.mark.parametrize("expression", ["*/5 * * * *", "0 9 * * MON-FRI", "@daily", "0 0 L * *", "15 14 1 * *"])
def test_good_cron_expressions(expression: str) -> None:
    assert cron_error(expression) is None


def test_time_zones() -> None:
    assert time_zone_error("Europe/Berlin") is None
    assert time_zone_error("UTC") is None
    assert time_zone_error("Mars/Olympus") is not None
    assert time_zone_error("../etc/passwd") is not None
    assert time_zone_error("") is not None
