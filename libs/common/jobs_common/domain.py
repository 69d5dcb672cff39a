"""Domain types shared by the api, the store and the worker; protobuf stops before these."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from jobs_common.schedules import RecurringSchedule

__all__ = [
    "TERMINAL_EXECUTION_STATES",
    "Attempt",
    "ErrorKind",
    "Execution",
    "ExecutionState",
    "HttpMethod",
    "HttpRequestSpec",
    "Job",
    "JobKind",
    "JobSpec",
    "JobState",
    "Page",
    "RequestKey",
    "RetryPolicy",
]


T = TypeVar("T")


class HttpMethod(enum.StrEnum):
    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"
    HEAD = "HEAD"
    OPTIONS = "OPTIONS"


class JobState(enum.StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    DELETED = "DELETED"


class JobKind(enum.StrEnum):
    ONE_OFF = "ONE_OFF"
    RECURRING = "RECURRING"


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
class RetryPolicy:
    max_attempts: int
    min_backoff: timedelta
    max_backoff: timedelta
    multiplier: float
    retry_status_codes: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class HttpRequestSpec:
    method: HttpMethod
    url: str
    headers: dict[str, str]
    body: bytes
    # Follow 3xx answers (each hop passes the egress policy); else a 3xx is a final failure.
    follow_redirects: bool = False
    # Lowercase names of the headers whose values are secret: sealed at rest, redacted on output.
    secret_headers: frozenset[str] = frozenset()
    # Standard Webhooks secrets (whsec_...): each request is signed with every one of them.
    signing_secrets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A validated job definition, as CreateJob accepts it."""

    http_request: HttpRequestSpec
    timeout: timedelta
    retry_policy: RetryPolicy
    run_at: datetime | None
    queue: str
    labels: dict[str, str]
    # Recurring jobs only; a one-off job has None (and maybe ``run_at``).
    schedule: RecurringSchedule | None = None

    @property
    def kind(self) -> JobKind:
        return JobKind.ONE_OFF if self.schedule is None else JobKind.RECURRING


@dataclass(frozen=True, slots=True)
class RequestKey:
    """A create request's AIP-155 ``request_id`` and a digest of the request it came with: the
    same id with another request is refused, not silently answered with the first job."""

    id: uuid.UUID
    fingerprint: bytes


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


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    spec: JobSpec
    state: JobState
    create_time: datetime
    update_time: datetime
    last_execution: Execution | None = None
    next_run_time: datetime | None = None
    run_count: int = 0


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; an empty ``next_page_token`` ends it."""

    items: list[T] = field(default_factory=list)
    next_page_token: str = ""
