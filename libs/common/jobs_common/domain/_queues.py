"""Queues as the api reports them: settings, depth by state, and which dead letters a call means."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from jobs_common.domain._executions import ErrorKind, ExecutionState

__all__ = [
    "DEFAULT_QUEUE",
    "KEEP_FOREVER",
    "DeadLetterFilter",
    "QueueDepth",
    "QueueInfo",
    "Retention",
    "RetentionChange",
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
class RetentionChange:
    """What an UpdateQueue changes: each retention it names (``set_*``), to a value or, None,
    back to the server's default."""

    set_history: bool = False
    history: timedelta | None = None
    set_dead_letters: bool = False
    dead_letters: timedelta | None = None


@dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    paused: bool
    pause_time: datetime | None
    # The queue's own retention; None takes the server's default.
    history_retention: timedelta | None = None
    dead_letter_retention: timedelta | None = None

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
