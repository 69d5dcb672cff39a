"""Queues as the api reports them: settings, depth by state, and which dead letters a call means."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from jobs_common.domain._executions import ErrorKind, ExecutionState

__all__ = ["DEFAULT_QUEUE", "DeadLetterFilter", "QueueDepth", "QueueInfo"]

# The queue of a job that names none.
DEFAULT_QUEUE = "default"


@dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    paused: bool
    pause_time: datetime | None


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
