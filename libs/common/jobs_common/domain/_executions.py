"""Executions (one firing of a job) and attempts (one HTTP try of an execution)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from jobs_common.domain._flow import FlowControl

__all__ = [
    "TERMINAL_EXECUTION_STATES",
    "Attempt",
    "ErrorKind",
    "Execution",
    "ExecutionState",
]


class ExecutionState(enum.StrEnum):
    SCHEDULED = "SCHEDULED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    RETRY_SCHEDULED = "RETRY_SCHEDULED"
    SUCCEEDED = "SUCCEEDED"
    DEAD = "DEAD"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"


TERMINAL_EXECUTION_STATES = frozenset(
    {ExecutionState.SUCCEEDED, ExecutionState.DEAD, ExecutionState.CANCELLED, ExecutionState.SKIPPED}
)


class ErrorKind(enum.StrEnum):
    TIMEOUT = "TIMEOUT"
    CONNECT = "CONNECT"
    DNS = "DNS"
    TLS = "TLS"
    HTTP_STATUS = "HTTP_STATUS"
    PROTOCOL = "PROTOCOL"
    CANCELLED = "CANCELLED"
    INTERRUPTED = "INTERRUPTED"
    POLICY = "POLICY"


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    worker_id: str
    start_time: datetime
    end_time: datetime | None
    response_status_code: int | None
    response_headers: dict[str, str]
    response_body: bytes
    response_body_truncated: bool
    error_kind: ErrorKind | None
    error_message: str
    superseded: bool = False


@dataclass(frozen=True, slots=True)
class Execution:
    id: str
    job_id: str
    state: ExecutionState
    attempt_count: int
    schedule_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    last_error: str
    replay_of: str | None
    create_time: datetime
    attempts: tuple[Attempt, ...] = ()
    tick_time: datetime | None = None
    # Its job's priority when it was created (what its dispatches are claimed by).
    priority: int = 0
    # Its job's flow control, and when that job was created (the latest job of a key sets the
    # key's limits).
    flow: FlowControl | None = None
    flow_since: datetime | None = None
