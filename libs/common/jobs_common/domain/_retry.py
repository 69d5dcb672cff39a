"""Delay before the next attempt: exponential backoff with bounded jitter, and Retry-After."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from jobs_common.domain._jobs import RetryPolicy

__all__ = ["JITTER_FRACTION", "LONGEST_RETRY_AFTER", "next_delay", "parse_retry_after"]

# Each delay is shortened by up to this fraction, so that a burst of failures spreads out while
# successive delays still grow whenever multiplier > 1 / (1 - JITTER_FRACTION).
JITTER_FRACTION = 0.1
# Retry-After is the target's word: anything longer reads as this (max_backoff bounds the delay
# anyway), so no number a target sends overflows a timedelta.
LONGEST_RETRY_AFTER = timedelta(days=366)
_DELAY_SECONDS = re.compile(r"[0-9]{1,12}")  # RFC 9110 delay-seconds: ASCII digits


def next_delay(
    policy: RetryPolicy,
    failed_attempts: int,
    retry_after: timedelta | None = None,
    rand: Callable[[], float] = random.random,
) -> timedelta:
    """Delay before the retry that follows ``failed_attempts`` failures (1 for the first retry).

    The exponential delay is ``min_backoff * multiplier ** (failed_attempts - 1)``; a longer
    ``Retry-After`` from the target wins; ``max_backoff`` bounds both.
    """
    exponent = max(failed_attempts - 1, 0)
    base = policy.min_backoff.total_seconds() * policy.multiplier**exponent
    seconds = min(base, policy.max_backoff.total_seconds())
    seconds *= 1.0 - JITTER_FRACTION * rand()
    if retry_after is not None:
        seconds = max(seconds, retry_after.total_seconds())
    return timedelta(seconds=min(seconds, policy.max_backoff.total_seconds()))


def parse_retry_after(value: str | None, now: datetime | None = None) -> timedelta | None:
    """Parses a Retry-After header: delay-seconds or an HTTP-date, at most LONGEST_RETRY_AFTER.
    Anything else a target sends yields None (the normal backoff applies); nothing raises."""
    if not value:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return min(timedelta(seconds=int(value)), LONGEST_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(when - (now or datetime.now(UTC)), timedelta(0)), LONGEST_RETRY_AFTER)
