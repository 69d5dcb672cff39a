"""Jobs: the definition a client sends (:class:`JobSpec`) and the job as stored (:class:`Job`)."""

from __future__ import annotations

import contextlib
import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Generic, TypeVar

from jobs_common.domain._executions import Execution
from jobs_common.domain._flow import FlowControl
from jobs_common.domain._schedules import RecurringSchedule, fire_times

__all__ = [
    "DEFAULT_SECRET_HEADERS",
    "REDACTED",
    "HttpMethod",
    "HttpRequestSpec",
    "Job",
    "JobKind",
    "JobSpec",
    "JobState",
    "Page",
    "RequestKey",
    "RetryPolicy",
    "upcoming_run_times",
]


T = TypeVar("T")

# GetJob previews this many fire times of a recurring job.
UPCOMING_PREVIEW = 5

# Header values that are always secret, besides the ones a job marks.
DEFAULT_SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})
# What a secret value reads as in every answer of the api; sent back in an update, it keeps the
# stored value.
REDACTED = "[REDACTED]"


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


class JobView(enum.StrEnum):
    """How much of each job a listing holds (AIP-157)."""

    # Everything but the request's body, headers, secret header names and signing secrets.
    BASIC = "BASIC"
    FULL = "FULL"


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


# The highest priority a job may have (0, the lowest, is the default).
MAX_PRIORITY = 9


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
    # 0-9: higher is claimed first among a queue's due executions (MAX_PRIORITY).
    priority: int = 0
    # Limits shared with the queue's other jobs of the same key (None: only the queue's).
    flow_control: FlowControl | None = None

    @property
    def kind(self) -> JobKind:
        return JobKind.ONE_OFF if self.schedule is None else JobKind.RECURRING


@dataclass(frozen=True, slots=True)
class Deduplication:
    """CreateJobRequest.deduplication: the creates of a tenant with ``key`` within ``window`` of
    the first make one job (DROP: the later ones return it; DEBOUNCE, ``debounce``: the job runs
    ``window`` after the last of them, with the last one's definition)."""

    key: str
    window: timedelta
    debounce: bool = False


@dataclass(frozen=True, slots=True)
class RequestKey:
    """A create request's AIP-155 ``request_id`` and a digest of the request it came with: the
    same id with another request is refused, not silently answered with the first job."""

    id: uuid.UUID
    fingerprint: bytes


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
    # Why the scheduler paused it ("" when it did not): ResumeJob clears it.
    schedule_error: str = ""


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; an empty ``next_page_token`` ends it."""

    items: list[T] = field(default_factory=list)
    next_page_token: str = ""


def upcoming_run_times(job: Job, count: int = UPCOMING_PREVIEW) -> list[datetime]:
    """The next fire times of an active recurring job: its next_run_time and those after it,
    at most ``count`` and no more than its ``max_runs`` leave."""
    schedule = job.spec.schedule
    if schedule is None or job.state is not JobState.ACTIVE or job.next_run_time is None:
        return []
    if schedule.max_runs is not None:
        count = min(count, schedule.max_runs - job.run_count)
    upcoming = [job.next_run_time]
    # A stored schedule that cannot be planned previews no more (the scheduler sets the job
    # aside, saying why, on its next pass); the times found before the error stay.
    with contextlib.suppress(Exception):
        upcoming.extend(islice(fire_times(schedule, job.next_run_time, anchor=job.create_time), max(count - 1, 0)))
    return upcoming[: max(count, 0)]
