"""Where an execution goes after an attempt: SUCCEEDED, RETRY_SCHEDULED (with a delay) or DEAD."""

from __future__ import annotations

from dataclasses import replace

from jobs_common.backoff import next_delay
from jobs_common.domain import ExecutionState, RetryPolicy
from jobs_common.store import AttemptResult
from jobs_worker._http import HttpOutcome

__all__ = ["ALWAYS_RETRIED_STATUSES", "decide"]

ALWAYS_RETRIED_STATUSES = frozenset({408, 429})


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
