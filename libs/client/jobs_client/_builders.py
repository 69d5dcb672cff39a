"""Small builders for the messages a client writes most: a job, its schedule, its retry policy."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from jobscheduler.v1 import resources_pb2 as pb

__all__ = ["cron", "every", "http_job", "retry_policy", "run_at"]


def _duration(value: timedelta) -> Duration:
    duration = Duration()
    duration.FromTimedelta(value)
    return duration


def _timestamp(value: datetime) -> Timestamp:
    if value.tzinfo is None:
        raise ValueError("give an aware datetime (with its time zone), e.g. datetime.now(UTC)")
    timestamp = Timestamp()
    timestamp.FromDatetime(value)
    return timestamp


def http_job(
    url: str,
    *,
    method: str = "POST",
    headers: Mapping[str, str] | None = None,
    body: bytes | str = b"",
    secret_headers: Iterable[str] = (),
    queue: str = "",
    labels: Mapping[str, str] | None = None,
    timeout: timedelta | None = None,
    retry: pb.RetryPolicy | None = None,
    schedule: pb.Schedule | None = None,
    follow_redirects: bool = False,
    priority: int = 0,
    flow_key: str = "",
    flow_max_concurrent: int = 0,
    flow_max_per_second: float = 0.0,
) -> pb.Job:
    """A job calling ``url``. ``method`` is an HTTP method name; a ``str`` body is sent as its
    UTF-8 bytes. Unset fields take the API's defaults (POST, 90 s, the default queue and retry
    policy, run now, priority 0: 9 is claimed first). ``flow_key``: the queue's jobs with this
    key share ``flow_max_concurrent`` calls open at once and ``flow_max_per_second`` started a
    second (0: no limit), and take turns with its other keys."""
    try:
        http_method = pb.HttpMethod.Value(f"HTTP_METHOD_{method.upper()}")
    except ValueError:
        raise ValueError(f"unknown HTTP method {method!r}") from None
    request = pb.HttpRequest(
        url=url,
        method=http_method,
        headers=dict(headers or {}),
        body=body.encode() if isinstance(body, str) else body,
        secret_headers=list(secret_headers),
        follow_redirects=follow_redirects,
    )
    job = pb.Job(http_request=request, queue=queue, labels=dict(labels or {}), priority=priority)
    if timeout is not None:
        job.timeout.CopyFrom(_duration(timeout))
    if retry is not None:
        job.retry_policy.CopyFrom(retry)
    if schedule is not None:
        job.schedule.CopyFrom(schedule)
    if flow_key:
        job.flow_control.CopyFrom(
            pb.FlowControl(
                key=flow_key, max_concurrent=flow_max_concurrent, max_dispatches_per_second=flow_max_per_second
            )
        )
    elif flow_max_concurrent or flow_max_per_second:
        raise ValueError("flow limits need a flow_key")
    return job


def retry_policy(
    max_attempts: int | None = None,
    *,
    min_backoff: timedelta | None = None,
    max_backoff: timedelta | None = None,
    multiplier: float | None = None,
    retry_status_codes: Iterable[int] = (),
) -> pb.RetryPolicy:
    """Attempts and exponential backoff; what is left unset takes the API's default."""
    policy = pb.RetryPolicy(retry_status_codes=list(retry_status_codes))
    if max_attempts is not None:
        policy.max_attempts = max_attempts
    if min_backoff is not None:
        policy.min_backoff.CopyFrom(_duration(min_backoff))
    if max_backoff is not None:
        policy.max_backoff.CopyFrom(_duration(max_backoff))
    if multiplier is not None:
        policy.multiplier = multiplier
    return policy


def run_at(when: datetime) -> pb.Schedule:
    """Run once, at ``when`` (an aware datetime)."""
    return pb.Schedule(run_at=_timestamp(when))


def _recurring(
    schedule: pb.Schedule, start: datetime | None, end: datetime | None, max_runs: int | None, overlap: str | None
) -> pb.Schedule:
    if start is not None:
        schedule.start_time.CopyFrom(_timestamp(start))
    if end is not None:
        schedule.end_time.CopyFrom(_timestamp(end))
    if max_runs is not None:
        schedule.max_runs = max_runs
    if overlap is not None:
        schedule.overlap_policy = pb.OverlapPolicy.Value(f"OVERLAP_POLICY_{overlap.upper()}")
    return schedule


def cron(
    expression: str,
    time_zone: str = "UTC",
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    max_runs: int | None = None,
    overlap: str | None = None,
) -> pb.Schedule:
    """A cron schedule (``"0 9 * * MON-FRI"``, ``"@daily"``) in an IANA time zone. ``overlap``:
    ``skip``, ``allow``, ``buffer_one`` or ``cancel_previous``."""
    return _recurring(
        pb.Schedule(cron=pb.CronSchedule(expression=expression, time_zone=time_zone)), start, end, max_runs, overlap
    )


def every(
    interval: timedelta,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    max_runs: int | None = None,
    overlap: str | None = None,
) -> pb.Schedule:
    """A fixed-interval schedule (at least one second)."""
    return _recurring(pb.Schedule(interval=_duration(interval)), start, end, max_runs, overlap)
