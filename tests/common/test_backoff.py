from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobs_common.domain import JITTER_FRACTION, LONGEST_RETRY_AFTER, RetryPolicy, next_delay, parse_retry_after

POLICY = RetryPolicy(
    max_attempts=10, min_backoff=timedelta(seconds=1), max_backoff=timedelta(seconds=30), multiplier=2.0
)


def test_delays_grow_exponentially_and_stop_at_max_backoff():
    no_jitter = [next_delay(POLICY, n, rand=lambda: 0.0).total_seconds() for n in range(1, 8)]
    assert no_jitter == [1, 2, 4, 8, 16, 30, 30]


def test_jitter_only_shortens_and_keeps_delays_growing():
    for n in range(1, 5):
        full = next_delay(POLICY, n, rand=lambda: 0.0)
        shortest = next_delay(POLICY, n, rand=lambda: 1.0)
        assert shortest == full * (1 - JITTER_FRACTION)
        assert next_delay(POLICY, n + 1, rand=lambda: 1.0) > full


def test_retry_after_wins_when_longer_but_never_past_max_backoff():
    assert next_delay(POLICY, 1, retry_after=timedelta(seconds=7), rand=lambda: 0.0) == timedelta(seconds=7)
    assert next_delay(POLICY, 1, retry_after=timedelta(hours=1)) == timedelta(seconds=30)
    assert next_delay(POLICY, 4, retry_after=timedelta(seconds=1), rand=lambda: 0.0) == timedelta(seconds=8)


def test_parse_retry_after_seconds_dates_and_garbage():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == timedelta(seconds=120)
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == timedelta(seconds=30)
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == timedelta(0)
    assert parse_retry_after("soon") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    "value",
    ["²", "3²", "٣", "99999999999999999999999", "9" * 5000, "1e9", "-5", "Thu, 01 Jan 1970 00:00:00 +9999"],
)
def test_odd_retry_after_values_are_ignored_or_bounded_never_raised(value):
    """Every value a target sends is parsed defensively: "²".isdigit() is true, int("²") raises."""
    parsed = parse_retry_after(value)
    assert parsed is None or timedelta(0) <= parsed <= LONGEST_RETRY_AFTER


def test_a_huge_retry_after_is_bounded():
    assert parse_retry_after("99999999999") == LONGEST_RETRY_AFTER
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT") == LONGEST_RETRY_AFTER
