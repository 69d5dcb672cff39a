"""Protobuf ⇄ domain. Protobuf types stop here; the rest of the api speaks domain types."""

from __future__ import annotations

import enum
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from jobs_common.domain import (
    REDACTED,
    Attempt,
    ErrorKind,
    Execution,
    ExecutionState,
    FlowControl,
    HttpMethod,
    Job,
    JobDraft,
    JobKind,
    JobState,
    JobView,
    RecurringSchedule,
    ScheduleDraft,
)
from jobs_common.errors import FieldViolation, InvalidArgumentError
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb

__all__ = [
    "attempt_to_proto",
    "duration_proto",
    "error_kind_from_proto",
    "execution_to_proto",
    "job_draft",
    "job_kind_from_proto",
    "job_state_from_proto",
    "job_to_proto",
    "job_view_from_proto",
    "set_duration",
    "set_timestamp",
    "timestamp_field",
    "timestamp_proto",
]

_METHOD_PREFIX = "HTTP_METHOD_"
_METHODS = {method: pb.HttpMethod.Value(_METHOD_PREFIX + method.value) for method in HttpMethod}
_JOB_STATES = {state: pb.JobState.Value("JOB_STATE_" + state.value) for state in JobState}
_JOB_KINDS = {kind: pb.JobKind.Value("JOB_KIND_" + kind.value) for kind in JobKind}
_EXECUTION_STATES = {state: pb.ExecutionState.Value("EXECUTION_STATE_" + state.value) for state in ExecutionState}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def job_draft(job: pb.Job, prefix: str = "job") -> JobDraft:
    """The client's job as sent; fields protobuf itself cannot represent become violations."""
    violations: list[FieldViolation] = []

    def duration(message: Message, name: str, path: str) -> timedelta | None:
        if not message.HasField(name):
            return None
        value: Duration = getattr(message, name)
        if not -315_576_000_000 <= value.seconds <= 315_576_000_000 or not -999_999_999 <= value.nanos <= 999_999_999:
            violations.append(FieldViolation(f"{prefix}.{path}", "is not a valid duration"))
            return None
        return timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)

    def timestamp(message: Message, name: str, path: str) -> datetime | None:
        try:
            return timestamp_field(message, name, f"{prefix}.{path}")
        except InvalidArgumentError as error:
            violations.extend(error.violations)
            return None

    request, policy, schedule = job.http_request, job.retry_policy, job.schedule
    run_at = timestamp(schedule, "run_at", "schedule.run_at")
    recurring = ScheduleDraft(
        cron_expression=schedule.cron.expression if schedule.HasField("cron") else None,
        time_zone=schedule.cron.time_zone,
        interval=duration(schedule, "interval", "schedule.interval"),
        overlap=_enum_name(pb.OverlapPolicy, schedule.overlap_policy, "OVERLAP_POLICY_"),
        catch_up=_enum_name(pb.CatchUpPolicy, schedule.catch_up_policy, "CATCH_UP_POLICY_"),
        catch_up_limit=schedule.catch_up_limit,
        start_time=timestamp(schedule, "start_time", "schedule.start_time"),
        end_time=timestamp(schedule, "end_time", "schedule.end_time"),
        max_runs=schedule.max_runs,
    )
    if schedule.HasField("interval") and recurring.interval is None and not violations:
        violations.append(FieldViolation(f"{prefix}.schedule.interval", "is not a valid duration"))
    body = request.body
    try:
        body = request_body(request, f"{prefix}.http_request")
    except InvalidArgumentError as error:
        violations.extend(error.violations)
    draft = JobDraft(
        url=request.url,
        method=_enum_name(pb.HttpMethod, request.method, _METHOD_PREFIX),
        headers=dict(request.headers),
        body=body,
        follow_redirects=request.follow_redirects,
        secret_headers=list(request.secret_headers),
        signing_secrets=list(request.signing.secrets),
        generate_signing_secret=request.signing.generate_secret,
        timeout=duration(job, "timeout", "timeout"),
        max_attempts=policy.max_attempts if policy.HasField("max_attempts") else None,
        min_backoff=duration(policy, "min_backoff", "retry_policy.min_backoff"),
        max_backoff=duration(policy, "max_backoff", "retry_policy.max_backoff"),
        multiplier=policy.multiplier if policy.HasField("multiplier") else None,
        retry_status_codes=list(policy.retry_status_codes),
        run_at=run_at,
        queue=job.queue,
        labels=dict(job.labels),
        schedule=recurring,
        priority=job.priority,
        flow_control=_flow_control_draft(job),
    )
    if violations:
        raise InvalidArgumentError(violations)
    return draft


def _flow_control_draft(job: pb.Job) -> FlowControl | None:
    if not job.HasField("flow_control"):
        return None
    flow = job.flow_control
    return FlowControl(flow.key, flow.max_concurrent, flow.max_dispatches_per_second)


def request_body(request: pb.HttpRequest, field_path: str) -> bytes:
    """The body the request asks for: ``body``, or ``body_text`` as UTF-8.

    Raises:
        InvalidArgumentError: both set, with different content.
    """
    if not request.body_text:
        return request.body
    text_body = request.body_text.encode()
    if request.body and request.body != text_body:
        raise InvalidArgumentError(
            [FieldViolation(f"{field_path}.body_text", "set body or body_text, not both with different content")]
        )
    return text_body


def fold_body_text(job: pb.Job, prefix: str = "job") -> pb.Job:
    """``job``, or a copy whose ``body_text`` is moved into ``body`` (UpdateJob merges the stored
    body with what the request sets, so the request's text must arrive as ``body``)."""
    if not job.http_request.body_text:
        return job
    folded = pb.Job()
    folded.CopyFrom(job)
    folded.http_request.body = request_body(job.http_request, f"{prefix}.http_request")
    folded.http_request.ClearField("body_text")
    return folded


def timestamp_field(message: Message, name: str, field_path: str) -> datetime | None:
    """The timestamp field ``name`` of ``message`` in UTC; None when unset.

    Raises:
        InvalidArgumentError: seconds or nanos out of the Timestamp range, on ``field_path``.
    """
    if not message.HasField(name):
        return None
    try:
        value: datetime = getattr(message, name).ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgumentError([FieldViolation(field_path, "is not a valid timestamp")]) from None
    return value


def job_state_from_proto(value: int) -> JobState | None:
    """None for JOB_STATE_UNSPECIFIED; INVALID_ARGUMENT for an unknown number."""
    return _enum_from_proto(pb.JobState, value, "JOB_STATE_", JobState, "state", "job state")


def job_kind_from_proto(value: int) -> JobKind | None:
    """None for JOB_KIND_UNSPECIFIED; INVALID_ARGUMENT for an unknown number."""
    return _enum_from_proto(pb.JobKind, value, "JOB_KIND_", JobKind, "kind", "job kind")


def job_view_from_proto(value: int) -> JobView:
    """BASIC for JOB_VIEW_UNSPECIFIED; INVALID_ARGUMENT for an unknown number."""
    return _enum_from_proto(api.JobView, value, "JOB_VIEW_", JobView, "view", "job view") or JobView.BASIC


def execution_state_from_proto(value: int, field_name: str) -> ExecutionState | None:
    """None for EXECUTION_STATE_UNSPECIFIED; INVALID_ARGUMENT for an unknown number."""
    return _enum_from_proto(pb.ExecutionState, value, "EXECUTION_STATE_", ExecutionState, field_name, "execution state")


def error_kind_from_proto(value: int, field_name: str) -> ErrorKind | None:
    """None for ERROR_KIND_UNSPECIFIED; INVALID_ARGUMENT for an unknown number."""
    return _enum_from_proto(pb.ErrorKind, value, "ERROR_KIND_", ErrorKind, field_name, "error kind")


E = TypeVar("E", bound=enum.Enum)


def _enum_from_proto(proto_enum: Any, value: int, prefix: str, domain: type[E], field_name: str, noun: str) -> E | None:
    """The domain enum member a proto enum number names; None when unset.

    Raises:
        InvalidArgumentError: an unknown enum number, on ``field_name``.
    """
    name = _enum_name(proto_enum, value, prefix)
    try:
        return domain(name) if name is not None else None
    except ValueError:
        raise InvalidArgumentError([FieldViolation(field_name, f"unknown {noun} {value}")]) from None


def job_to_proto(job: Job, upcoming: list[datetime] | None = None, *, shown_secrets: Collection[str] = ()) -> pb.Job:
    """The job as the api answers it: secret header values and signing secrets read
    "[REDACTED]", except the signing secrets in ``shown_secrets`` (generated by this call).

    Built field by field into the message's own sub-messages (made and copied in, they cost
    three times as much: this is most of a BatchCreateJobs answer)."""
    spec, policy = job.spec, job.spec.retry_policy
    request = spec.http_request
    message = pb.Job(
        id=job.id,
        queue=spec.queue,
        state=_JOB_STATES[job.state],
        kind=_JOB_KINDS[spec.kind],
        run_count=job.run_count,
        schedule_error=job.schedule_error,
        priority=spec.priority,
    )
    call = message.http_request
    call.SetInParent()
    call.method = _METHODS[request.method]
    call.url = request.url
    secret = request.secret_headers
    for name, value in request.headers.items():
        call.headers[name] = REDACTED if name.lower() in secret and value not in shown_secrets else value
    call.body = request.body
    call.follow_redirects = request.follow_redirects
    call.secret_headers.extend(sorted(name for name in request.headers if name.lower() in secret))
    call.signing.SetInParent()
    call.signing.secrets.extend(s if s in shown_secrets else REDACTED for s in request.signing_secrets)
    set_duration(message.timeout, spec.timeout)
    retry = message.retry_policy
    retry.SetInParent()
    retry.max_attempts = policy.max_attempts
    set_duration(retry.min_backoff, policy.min_backoff)
    set_duration(retry.max_backoff, policy.max_backoff)
    retry.multiplier = policy.multiplier
    retry.retry_status_codes.extend(policy.retry_status_codes)
    for name, value in spec.labels.items():
        message.labels[name] = value
    set_timestamp(message.create_time, job.create_time)
    set_timestamp(message.update_time, job.update_time)
    for time in upcoming or ():
        set_timestamp(message.upcoming_run_times.add(), time)
    if spec.flow_control is not None:
        flow = spec.flow_control
        message.flow_control.SetInParent()
        message.flow_control.key = flow.key
        message.flow_control.max_concurrent = flow.max_concurrent
        message.flow_control.max_dispatches_per_second = flow.max_dispatches_per_second
    if spec.run_at is not None:
        set_timestamp(message.schedule.run_at, spec.run_at)
    if spec.schedule is not None:
        _schedule_to_proto(spec.schedule, message.schedule)
    if job.next_run_time is not None:
        set_timestamp(message.next_run_time, job.next_run_time)
    if job.last_execution is not None:
        _fill_execution(message.last_execution, job.last_execution)
    return message


def execution_to_proto(execution: Execution) -> pb.Execution:
    message = pb.Execution()
    _fill_execution(message, execution)
    return message


def _fill_execution(message: pb.Execution, execution: Execution) -> None:
    message.SetInParent()
    message.id = execution.id
    message.job_id = execution.job_id
    message.state = _EXECUTION_STATES[execution.state]
    message.attempt_count = execution.attempt_count
    set_timestamp(message.schedule_time, execution.schedule_time)
    message.last_error = execution.last_error
    message.replay_of = execution.replay_of or ""
    set_timestamp(message.create_time, execution.create_time)
    message.attempts.extend(attempt_to_proto(a) for a in execution.attempts)
    if execution.start_time is not None:
        set_timestamp(message.start_time, execution.start_time)
    if execution.end_time is not None:
        set_timestamp(message.end_time, execution.end_time)
    if execution.tick_time is not None:
        set_timestamp(message.tick_time, execution.tick_time)


def attempt_to_proto(attempt: Attempt) -> pb.Attempt:
    message = pb.Attempt(
        number=attempt.number,
        worker_id=attempt.worker_id,
        start_time=timestamp_proto(attempt.start_time),
        response_status_code=attempt.response_status_code or 0,
        response_headers=attempt.response_headers,
        response_body=attempt.response_body,
        response_body_truncated=attempt.response_body_truncated,
        error_kind=_error_kind(attempt.error_kind),
        error_message=attempt.error_message,
        superseded=attempt.superseded,
    )
    if attempt.end_time is not None:
        set_timestamp(message.end_time, attempt.end_time)
        set_duration(message.duration, attempt.end_time - attempt.start_time)
    return message


def _schedule_to_proto(schedule: RecurringSchedule, message: pb.Schedule) -> None:
    if schedule.cron is not None:
        message.cron.expression = schedule.cron.expression
        message.cron.time_zone = schedule.cron.time_zone
    if schedule.interval is not None:
        set_duration(message.interval, schedule.interval)
    message.overlap_policy = pb.OverlapPolicy.Value("OVERLAP_POLICY_" + schedule.overlap.value)
    message.catch_up_policy = pb.CatchUpPolicy.Value("CATCH_UP_POLICY_" + schedule.catch_up.value)
    if schedule.catch_up.value == "RUN_ALL":
        message.catch_up_limit = schedule.catch_up_limit
    if schedule.start_time is not None:
        set_timestamp(message.start_time, schedule.start_time)
    if schedule.end_time is not None:
        set_timestamp(message.end_time, schedule.end_time)
    message.max_runs = schedule.max_runs or 0


def _enum_name(enum: Any, value: int, prefix: str) -> str | None:
    """The enum value's name without its prefix; None when unset, ``"<number>"`` when unknown."""
    if value == 0:
        return None
    try:
        return str(enum.Name(value)).removeprefix(prefix)
    except ValueError:
        return str(value)


def _error_kind(kind: ErrorKind | None) -> pb.ErrorKind.ValueType:
    return pb.ErrorKind.Value("ERROR_KIND_" + kind.value) if kind else pb.ERROR_KIND_UNSPECIFIED


def timestamp_proto(value: datetime) -> Timestamp:
    message = Timestamp()
    set_timestamp(message, value)
    return message


def set_timestamp(message: Timestamp, value: datetime) -> None:
    """``message`` := ``value`` (naive: UTC), as Timestamp.FromDatetime, in a third of its time."""
    since = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)) - _EPOCH
    message.SetInParent()
    message.seconds = since.days * 86_400 + since.seconds
    message.nanos = since.microseconds * 1000


def duration_proto(value: timedelta) -> Duration:
    message = Duration()
    set_duration(message, value)
    return message


def set_duration(message: Duration, value: timedelta) -> None:
    """``message`` := ``value``, marked set in its parent even when zero."""
    message.SetInParent()
    message.FromTimedelta(value)
