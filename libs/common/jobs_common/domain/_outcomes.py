"""A claimed execution, the outcome of its HTTP attempt, and where the execution goes next.

:func:`decide` is the worker's retry policy as a pure function: an attempt's outcome, the job's
retry policy and the attempts counted so far give SUCCEEDED, RETRY_SCHEDULED (with its delay) or
DEAD.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from jobs_common.domain._executions import TERMINAL_EXECUTION_STATES, ErrorKind, ExecutionState
from jobs_common.domain._jobs import HttpRequestSpec, RetryPolicy
from jobs_common.domain._retry import next_delay, parse_retry_after

__all__ = ["ALWAYS_RETRIED_STATUSES", "AttemptResult", "Claim", "HttpOutcome", "NotClaimed", "decide"]

ALWAYS_RETRIED_STATUSES = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class Claim:
    """An execution this worker now runs, as attempt ``number``."""

    execution_id: uuid.UUID
    job_id: uuid.UUID
    number: int
    # Earlier attempts that used up the retry budget (interrupted ones do not).
    counted_before: int
    request: HttpRequestSpec
    timeout: timedelta
    retry_policy: RetryPolicy
    # How long the attempt had been due when it was claimed (PostgreSQL's clock).
    due_for: timedelta
    # When the execution was created, and the traceparent it was created under (tracing).
    create_time: datetime
    trace_parent: str | None
    # Why the request's secrets cannot be opened here (this worker lacks the key): no call.
    secrets_problem: str | None = None


@dataclass(frozen=True, slots=True)
class NotClaimed:
    """Why a delivery did not claim: the execution is missing, finished, not yet due, leased, or
    its queue is paused."""

    state: ExecutionState | None
    until_due: timedelta
    until_lease_expiry: timedelta | None
    # Its queue is paused (QueueService.PauseQueue).
    paused: bool = False

    @property
    def finished(self) -> bool:
        return self.state is None or self.state in TERMINAL_EXECUTION_STATES


@dataclass(frozen=True, slots=True)
class HttpOutcome:
    """What one HTTP attempt gave: an answer (status, headers, the body kept) or an error."""

    status_code: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    truncated: bool = False
    error_kind: ErrorKind | None = None
    error_message: str = ""
    # False when trying again cannot help (the request itself is unusable).
    retryable: bool = True

    @property
    def retry_after(self) -> timedelta | None:
        return parse_retry_after(self.headers.get("retry-after"))


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What to record of an attempt and where the execution goes next."""

    state: ExecutionState
    status_code: int | None = None
    response_headers: dict[str, str] | None = None
    response_body: bytes = b""
    truncated: bool = False
    error_kind: ErrorKind | None = None
    error_message: str = ""
    retry_delay: timedelta | None = None


def decide(outcome: HttpOutcome, policy: RetryPolicy, counted_attempts: int) -> AttemptResult:
    """``counted_attempts`` includes the attempt that produced ``outcome``."""
    recorded = AttemptResult(
        state=ExecutionState.SUCCEEDED,
        status_code=outcome.status_code,
        response_headers=outcome.headers,
        response_body=outcome.body,
        truncated=outcome.truncated,
        error_kind=outcome.error_kind,
        error_message=outcome.error_message,
    )
    if outcome.error_kind is None:
        return recorded
    if not _retryable(outcome, policy):
        return replace(recorded, state=ExecutionState.DEAD)
    if counted_attempts >= policy.max_attempts:
        message = f"{outcome.error_message} (all {policy.max_attempts} attempts used)"
        return replace(recorded, state=ExecutionState.DEAD, error_message=message)
    delay = next_delay(policy, counted_attempts, outcome.retry_after)
    return replace(recorded, state=ExecutionState.RETRY_SCHEDULED, retry_delay=delay)


def _retryable(outcome: HttpOutcome, policy: RetryPolicy) -> bool:
    if not outcome.retryable:
        return False
    status = outcome.status_code
    if status is None:  # timeout, connection, DNS, TLS or protocol error
        return True
    return status >= 500 or status in ALWAYS_RETRIED_STATUSES or status in policy.retry_status_codes
