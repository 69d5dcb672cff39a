"""Mapping of table rows to domain objects."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import defer
from sqlalchemy.orm.interfaces import ORMOption

from jobs_common.db import AttemptRow, ExecutionRow, JobRow
from jobs_common.domain import (
    DEFAULT_SECRET_HEADERS,
    Attempt,
    CatchUpPolicy,
    CronSpec,
    ErrorKind,
    Execution,
    ExecutionState,
    FlowControl,
    HttpMethod,
    HttpRequestSpec,
    Job,
    JobSpec,
    JobState,
    OverlapPolicy,
    RecurringSchedule,
    RetryPolicy,
)
from jobs_common.secrets import SealedSecrets, SecretBox, SecretsError, job_secrets_binding

__all__ = [
    "CallColumns",
    "attempt_from_row",
    "basic_http_request_from",
    "call_columns",
    "execution_from_row",
    "flow_from",
    "http_request_from",
    "job_from_row",
    "job_spec_columns",
    "retry_policy_from",
    "schedule_columns",
    "scoped_flow",
    "without_request",
]

logger = logging.getLogger(__name__)


def job_spec_columns(spec: JobSpec, box: SecretBox, job_id: uuid.UUID, tenant: str) -> dict[str, object]:
    """The jobs-table columns that hold a job's definition (its secrets sealed by ``box``, for
    this job only; its flow key, the tenant's)."""
    return {
        **call_columns(spec, box, job_id, tenant),
        **schedule_columns(spec.schedule),
        "run_at": spec.run_at,
        "queue": spec.queue,
        "labels": spec.labels,
    }


def call_columns(spec: JobSpec, box: SecretBox, job_id: uuid.UUID, tenant: str) -> dict[str, object]:
    """What to call and how to retry: the columns jobs and executions share. Secret header
    values and signing secrets go sealed into ``sealed_secrets``, never into ``headers``, bound
    to the job (its executions' copies open with its id too)."""
    policy, request = spec.retry_policy, spec.http_request
    secret = {name: value for name, value in request.headers.items() if name.lower() in request.secret_headers}
    return {
        "method": request.method.value,
        "url": request.url,
        "headers": {name: value for name, value in request.headers.items() if name not in secret},
        "sealed_secrets": box.seal(SealedSecrets(secret, request.signing_secrets), job_secrets_binding(job_id)),
        "body": spec.http_request.body,
        "timeout_ms": _ms(spec.timeout),
        "max_attempts": policy.max_attempts,
        "min_backoff_ms": _ms(policy.min_backoff),
        "max_backoff_ms": _ms(policy.max_backoff),
        "multiplier": policy.multiplier,
        "retry_status_codes": list(policy.retry_status_codes),
        "follow_redirects": request.follow_redirects,
        "priority": spec.priority,
        **flow_columns(scoped_flow(spec.flow_control, tenant)),
    }


def scoped_flow(flow: FlowControl | None, tenant: str) -> FlowControl | None:
    """``flow`` with its key the tenant's own (``<tenant>/<key>``; a tenant has no '/'): jobs
    of one queue share a key's limits only within their tenant, and a tenant's jobs cannot set
    another's limits. Stored so, and so in Redis; a job shows the key as it was given."""
    if flow is None:
        return None
    return FlowControl(f"{tenant}/{flow.key}", flow.max_concurrent, flow.max_dispatches_per_second)


def flow_columns(flow: FlowControl | None) -> dict[str, object]:
    """Job.flow_control's columns, but ``flow_since``: the job's creation writes it, and its
    executions copy it."""
    if flow is None:
        return {"flow_key": None, "flow_max_concurrent": 0, "flow_rate": 0.0}
    return {
        "flow_key": flow.key,
        "flow_max_concurrent": flow.max_concurrent,
        "flow_rate": flow.max_dispatches_per_second,
    }


class FlowColumns(Protocol):
    flow_key: str | None
    flow_max_concurrent: int
    flow_rate: float


def flow_from(row: FlowColumns) -> FlowControl | None:
    """The row's flow control, its key scoped to its tenant (``scoped_flow``)."""
    if row.flow_key is None:
        return None
    return FlowControl(row.flow_key, row.flow_max_concurrent, row.flow_rate)


def shown_flow(row: FlowColumns) -> FlowControl | None:
    """The row's flow control as its job was given it (the key without its tenant)."""
    flow = flow_from(row)
    return None if flow is None else replace(flow, key=flow.key.partition("/")[2])


def schedule_columns(schedule: RecurringSchedule | None) -> dict[str, object]:
    if schedule is None:
        return {
            "schedule_kind": "ONE_OFF",
            "cron_expression": None,
            "time_zone": None,
            "interval_ms": None,
            "overlap_policy": OverlapPolicy.SKIP.value,
            "catch_up_policy": CatchUpPolicy.SKIP_MISSED.value,
            "catch_up_limit": 1,
            "start_time": None,
            "end_time": None,
            "max_runs": None,
        }
    return {
        "schedule_kind": "CRON" if schedule.cron else "INTERVAL",
        "cron_expression": schedule.cron.expression if schedule.cron else None,
        "time_zone": schedule.cron.time_zone if schedule.cron else None,
        "interval_ms": _ms(schedule.interval) if schedule.interval else None,
        "overlap_policy": schedule.overlap.value,
        "catch_up_policy": schedule.catch_up.value,
        "catch_up_limit": schedule.catch_up_limit,
        "start_time": schedule.start_time,
        "end_time": schedule.end_time,
        "max_runs": schedule.max_runs,
    }


def schedule_from_row(row: JobRow) -> RecurringSchedule | None:
    if row.schedule_kind == "ONE_OFF":
        return None
    return RecurringSchedule(
        cron=CronSpec(row.cron_expression, row.time_zone or "UTC") if row.cron_expression is not None else None,
        interval=timedelta(milliseconds=row.interval_ms) if row.interval_ms is not None else None,
        overlap=OverlapPolicy(row.overlap_policy),
        catch_up=CatchUpPolicy(row.catch_up_policy),
        catch_up_limit=row.catch_up_limit,
        start_time=row.start_time,
        end_time=row.end_time,
        max_runs=row.max_runs,
    )


class CallColumns(Protocol):
    """The jobs-table columns that say what to call and how to retry (a JobRow, or a row of a
    statement that selects them)."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    timeout_ms: int
    max_attempts: int
    min_backoff_ms: int
    max_backoff_ms: int
    multiplier: float
    retry_status_codes: list[int]
    follow_redirects: bool
    sealed_secrets: str | None
    priority: int
    flow_key: str | None
    flow_max_concurrent: int
    flow_rate: float
    flow_since: datetime | None


def http_request_from(
    row: CallColumns, box: SecretBox, job_id: uuid.UUID, *, open_secrets: bool = True
) -> HttpRequestSpec:
    """The request of a row of job ``job_id`` (the job's or one of its executions'). Raises
    SecretsError when ``box`` cannot open the row's secrets: it lacks their key, or they were
    sealed for another job (``open_secrets=False``: the request without its sealed secrets)."""
    secrets = box.open(row.sealed_secrets, job_secrets_binding(job_id)) if open_secrets else SealedSecrets()
    # Rows written before secrets were sealed may hold Authorization & co. in clear.
    in_clear = {name.lower() for name in row.headers if name.lower() in DEFAULT_SECRET_HEADERS}
    return HttpRequestSpec(
        method=HttpMethod(row.method),
        url=row.url,
        headers={**row.headers, **secrets.headers},
        body=row.body,
        follow_redirects=row.follow_redirects,
        secret_headers=frozenset(name.lower() for name in secrets.headers) | in_clear,
        signing_secrets=secrets.signing_secrets,
    )


def basic_http_request_from(row: CallColumns) -> HttpRequestSpec:
    """The request without its headers, body and secrets (columns a BASIC read leaves out)."""
    return HttpRequestSpec(
        method=HttpMethod(row.method), url=row.url, headers={}, body=b"", follow_redirects=row.follow_redirects
    )


def retry_policy_from(row: CallColumns) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=row.max_attempts,
        min_backoff=timedelta(milliseconds=row.min_backoff_ms),
        max_backoff=timedelta(milliseconds=row.max_backoff_ms),
        multiplier=row.multiplier,
        retry_status_codes=tuple(row.retry_status_codes),
    )


def job_from_row(
    row: JobRow,
    last_execution: ExecutionRow | None,
    box: SecretBox,
    *,
    need_secrets: bool = False,
    basic: bool = False,
) -> Job:
    """The stored job. Its secrets opened when ``box`` can; when it cannot (the key is gone, the
    value damaged) the job reads without them, logged, unless ``need_secrets`` (a change that
    keeps them): then SecretsError. ``basic``: the request without its headers, body and
    secrets (JobView.BASIC), which need not have been read."""
    if basic:
        request = basic_http_request_from(row)
    else:
        try:
            request = http_request_from(row, box, row.id)
        except SecretsError as error:
            if need_secrets:
                raise
            logger.warning("job %s read without its secret headers and signing secrets: %s", row.id, error)
            request = http_request_from(row, box, row.id, open_secrets=False)
    spec = JobSpec(
        http_request=request,
        timeout=timedelta(milliseconds=row.timeout_ms),
        retry_policy=retry_policy_from(row),
        run_at=row.run_at,
        queue=row.queue,
        labels={str(k): str(v) for k, v in row.labels.items()},
        schedule=schedule_from_row(row),
        priority=row.priority,
        flow_control=shown_flow(row),
    )
    return Job(
        id=str(row.id),
        spec=spec,
        state=JobState(row.state),
        create_time=row.create_time,
        update_time=row.update_time,
        last_execution=execution_from_row(last_execution) if last_execution is not None else None,
        next_run_time=row.next_run_time,
        run_count=row.run_count,
        schedule_error=row.schedule_error or "",
    )


def without_request(entity: Any) -> tuple[ORMOption, ...]:
    """Load options that leave a row's request headers, body and secrets unread: for listings of
    executions (which never show the copy of their job's request they carry) and BASIC jobs.
    ``entity`` is JobRow, ExecutionRow or an alias of one."""
    return (defer(entity.headers), defer(entity.body), defer(entity.sealed_secrets))


def execution_from_row(row: ExecutionRow, attempts: list[AttemptRow] | None = None) -> Execution:
    return Execution(
        id=str(row.id),
        job_id=str(row.job_id),
        state=ExecutionState(row.state),
        attempt_count=row.attempt_count,
        schedule_time=row.schedule_time,
        start_time=row.start_time,
        end_time=row.end_time,
        last_error=row.last_error,
        replay_of=str(row.replay_of) if row.replay_of else None,
        create_time=row.create_time,
        attempts=tuple(attempt_from_row(a) for a in attempts or ()),
        tick_time=row.tick_time,
        priority=row.priority,
        flow=flow_from(row),
        flow_since=row.flow_since,
    )


def attempt_from_row(row: AttemptRow) -> Attempt:
    return Attempt(
        number=row.number,
        worker_id=row.worker_id,
        start_time=row.start_time,
        end_time=row.end_time,
        response_status_code=row.response_status_code,
        response_headers=dict(row.response_headers),
        response_body=row.response_body,
        response_body_truncated=row.response_body_truncated,
        error_kind=ErrorKind(row.error_kind) if row.error_kind else None,
        error_message=row.error_message,
        superseded=row.superseded,
    )


def _ms(value: timedelta) -> int:
    return round(value.total_seconds() * 1000)
