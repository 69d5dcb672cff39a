"""Queues as the api reports them: settings, depth by state, and which dead letters a call means."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from jobs_common.domain._executions import ErrorKind, ExecutionState

__all__ = [
    "DEFAULT_QUEUE",
    "KEEP_FOREVER",
    "RATE_LIMIT_FIELDS",
    "DeadLetterFilter",
    "QueueChange",
    "QueueDepth",
    "QueueInfo",
    "RateLimits",
    "Retention",
]

# The queue of a job that names none.
DEFAULT_QUEUE = "default"


# A retention of zero: nothing is deleted.
KEEP_FOREVER = timedelta(0)


@dataclass(frozen=True, slots=True)
class Retention:
    """How long finished executions (``history``) and dead letters are kept after they ended;
    :data:`KEEP_FOREVER` keeps them."""

    history: timedelta
    dead_letters: timedelta


@dataclass(frozen=True, slots=True)
class RateLimits:
    """How fast a queue's calls start and how many are open at once, across every worker (Cloud
    Tasks' RateLimits): a token bucket refilled at ``max_dispatches_per_second`` holding at most
    :attr:`burst` tokens, one taken by each call started; at most ``max_concurrent_dispatches``
    calls open. 0 is no limit."""

    max_dispatches_per_second: float = 0.0
    max_burst_size: int = 0
    max_concurrent_dispatches: int = 0

    @property
    def burst(self) -> int:
        """The bucket's size in force: ``max_burst_size``, or, when unset, the rate rounded up (at
        least 1); 0 without a rate."""
        if not self.max_dispatches_per_second:
            return 0
        return self.max_burst_size or max(1, math.ceil(self.max_dispatches_per_second))

    @property
    def unlimited(self) -> bool:
        return not self.max_dispatches_per_second and not self.max_concurrent_dispatches


# The fields of RateLimits, as UpdateQueue's mask names them under "rate_limits.".
RATE_LIMIT_FIELDS = ("max_dispatches_per_second", "max_burst_size", "max_concurrent_dispatches")


@dataclass(frozen=True, slots=True)
class QueueChange:
    """What an UpdateQueue changes: each retention it names (``set_*``), to a value or, None,
    back to the server's default; each rate limit it names (:data:`RATE_LIMIT_FIELDS`), to its
    value in ``rate_limits``."""

    set_history: bool = False
    history: timedelta | None = None
    set_dead_letters: bool = False
    dead_letters: timedelta | None = None
    set_rate_limits: frozenset[str] = frozenset()
    rate_limits: RateLimits = field(default_factory=RateLimits)


@dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    paused: bool
    pause_time: datetime | None
    # The queue's own retention; None takes the server's default.
    history_retention: timedelta | None = None
    dead_letter_retention: timedelta | None = None
    rate_limits: RateLimits = field(default_factory=RateLimits)

    def retention(self, default: Retention) -> Retention:
        """What this queue keeps: its own values, or ``default`` where it has none."""
        return Retention(
            default.history if self.history_retention is None else self.history_retention,
            default.dead_letters if self.dead_letter_retention is None else self.dead_letter_retention,
        )


@dataclass(frozen=True, slots=True)
class QueueDepth:
    queue: str
    state: ExecutionState
    count: int
    # Seconds the oldest due, waiting execution in this state has waited; None if none is due.
    oldest_ready_age: float | None


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which dead letters (DEAD executions not replayed yet) a call means; None matches any."""

    queue: str | None = None
    job_id: uuid.UUID | None = None
    ended_after: datetime | None = None
    ended_before: datetime | None = None
    error_kind: ErrorKind | None = None
