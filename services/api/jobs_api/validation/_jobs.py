"""Checks of a job a client sends; bad input never reaches PostgreSQL or Redis.

Each check collects a :class:`FieldViolation` naming the request field, so one answer lists every
bad field at once (AIP-193 ``BadRequest``). The checks are pure: a signing secret the client asks
to have generated is made before them (:func:`jobs_api.signing_secrets.with_requested_secret`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from jobs_api.validation._fields import QUEUE_NAME, QUEUE_NAME_RULE
from jobs_api.validation._limits import JobLimits
from jobs_api.validation._urls import check_url
from jobs_common.domain import (
    DEFAULT_QUEUE,
    DEFAULT_SECRET_HEADERS,
    MAX_FLOW_CONCURRENT,
    MAX_FLOW_KEY_LENGTH,
    MAX_FLOW_RATE,
    MAX_PRIORITY,
    MIN_INTERVAL,
    REDACTED,
    CatchUpPolicy,
    CronSpec,
    FlowControl,
    HttpMethod,
    HttpRequestSpec,
    JobDraft,
    JobSpec,
    OverlapPolicy,
    RecurringSchedule,
    RetryPolicy,
    ScheduleDraft,
    cron_error,
    time_zone_error,
)
from jobs_common.errors import FieldViolation, InvalidArgumentError
from jobs_common.signing import MAX_SIGNING_SECRETS, SIGNING_HEADERS, signing_secret_problem

__all__ = ["validate_job"]

DEFAULT_MIN_BACKOFF = timedelta(seconds=1)
DEFAULT_MAX_BACKOFF = timedelta(seconds=600)
DEFAULT_MULTIPLIER = 2.0
MAX_MULTIPLIER = 10.0
MAX_SCHEDULE_AHEAD = timedelta(days=366)
# A recurring schedule's window: its fire times, and the five GetJob previews, must stay far from
# the year 9999 where Python's datetime (and cronsim's search for the next match) ends.
EARLIEST_SCHEDULE_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_WINDOW_AHEAD = timedelta(days=100 * 365)
MAX_BACKOFF_LIMIT = timedelta(days=1)
MAX_INTERVAL = timedelta(days=366)
DEFAULT_CATCH_UP_LIMIT = 10

# Headers the service sets itself or that describe the connection, not the request.
RESERVED_HEADERS = frozenset(
    {
        "idempotency-key",
        "user-agent",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-connection",
    }
)

_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 field values as we send them: visible ASCII, spaces and tabs (httpx encodes ASCII; a
# control character or CR/LF would split or corrupt the request).
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")

# The ``bad(path, description)`` callback that collects violations.
_Bad = Callable[[str, str], None]


def validate_job(draft: JobDraft, limits: JobLimits, prefix: str = "job") -> JobSpec:
    """Returns the validated job with defaults filled in.

    Raises:
        InvalidArgumentError: with one violation per bad field.
    """
    violations: list[FieldViolation] = []

    def bad(path: str, description: str) -> None:
        violations.append(FieldViolation(f"{prefix}.{path}", description))

    method = _check_method(draft.method, bad)
    check_url(draft.url, limits.max_url_length, limits.egress_policy, bad)
    _check_headers(draft.headers, limits, bad)
    secret_headers = _check_secret_headers(draft, bad)
    signing_secrets = _check_signing(draft, bad)
    if len(draft.body) > limits.max_body_bytes:
        bad("http_request.body", f"is {len(draft.body)} bytes; the limit is {limits.max_body_bytes}")

    timeout = draft.timeout if draft.timeout is not None else limits.default_timeout
    if timeout <= timedelta(0):
        bad("timeout", "must be positive")
    elif timeout > limits.max_timeout:
        bad("timeout", f"must be at most {limits.max_timeout.total_seconds():g}s")

    policy = _check_retry_policy(draft, limits, bad)
    run_at = _check_run_at(draft.run_at, bad)
    _check_one_schedule_kind(draft, bad)
    schedule = _check_schedule(draft.schedule, limits.max_catch_up, bad)

    queue = draft.queue or DEFAULT_QUEUE
    if not QUEUE_NAME.fullmatch(queue):
        bad("queue", QUEUE_NAME_RULE)
    _check_labels(draft.labels, limits.max_labels, bad)
    if not 0 <= draft.priority <= MAX_PRIORITY:
        bad("priority", f"must be between 0 (the default) and {MAX_PRIORITY}")
    if draft.flow_control is not None:
        _check_flow_control(draft.flow_control, bad)

    if violations:
        raise InvalidArgumentError(violations)
    return JobSpec(
        http_request=HttpRequestSpec(
            method=method or HttpMethod.POST,
            url=draft.url,
            headers=dict(draft.headers),
            body=draft.body,
            follow_redirects=draft.follow_redirects,
            secret_headers=secret_headers,
            signing_secrets=signing_secrets,
        ),
        timeout=timeout,
        retry_policy=policy,
        run_at=run_at,
        queue=queue,
        labels=dict(draft.labels),
        schedule=schedule,
        priority=draft.priority,
        flow_control=draft.flow_control,
    )


def _check_flow_control(flow: FlowControl, bad: _Bad) -> None:
    if not 1 <= len(flow.key) <= MAX_FLOW_KEY_LENGTH or "\0" in flow.key:
        bad("flow_control.key", f"must be 1 to {MAX_FLOW_KEY_LENGTH} characters, without NUL")
    if not 0 <= flow.max_concurrent <= MAX_FLOW_CONCURRENT:
        bad("flow_control.max_concurrent", f"must be between 0 (no limit) and {MAX_FLOW_CONCURRENT:,}")
    rate = flow.max_dispatches_per_second
    if not (math.isfinite(rate) and 0 <= rate <= MAX_FLOW_RATE):
        bad("flow_control.max_dispatches_per_second", f"must be between 0 (no limit) and {MAX_FLOW_RATE:,.0f}")


def _check_method(method: str | None, bad: _Bad) -> HttpMethod | None:
    if method is None:
        return None
    try:
        return HttpMethod(method)
    except ValueError:
        bad("http_request.method", f"unknown HTTP method {method!r}")
        return None


def _check_headers(headers: dict[str, str], limits: JobLimits, bad: _Bad) -> None:
    path = "http_request.headers"
    if len(headers) > limits.max_headers:
        bad(path, f"has {len(headers)} headers; the limit is {limits.max_headers}")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in headers.items())
    if size > limits.max_header_bytes:
        bad(path, f"total {size} bytes; the limit is {limits.max_header_bytes}")
    for name, value in headers.items():
        shown = name[:64]
        if not _HEADER_NAME.fullmatch(name):
            bad(path, f"{shown!r} is not a valid header name")
        elif name.lower() in RESERVED_HEADERS:
            bad(path, f"{shown!r} is set by the service and cannot be given")
        elif not _HEADER_VALUE.fullmatch(value):
            bad(path, f"value of {shown!r} may hold only visible ASCII characters, spaces and tabs (RFC 9110)")
        elif value == REDACTED:
            bad(path, f"value of {shown!r} is {REDACTED}, which stands for a stored secret: send the value itself")


def _check_secret_headers(draft: JobDraft, bad: _Bad) -> frozenset[str]:
    """The lowercase names of the headers whose values are secret: the marked ones and the
    always-secret ones present."""
    present = {name.lower() for name in draft.headers}
    marked = set()
    for index, name in enumerate(draft.secret_headers):
        if name.lower() not in present:
            bad(f"http_request.secret_headers[{index}]", f"{name[:64]!r} names no header of http_request.headers")
        marked.add(name.lower())
    return frozenset(marked | (present & DEFAULT_SECRET_HEADERS))


def _check_signing(draft: JobDraft, bad: _Bad) -> tuple[str, ...]:
    secrets = list(draft.signing_secrets)
    for index, secret in enumerate(secrets):
        if (problem := signing_secret_problem(secret)) is not None:
            bad(f"http_request.signing.secrets[{index}]", problem)
    if draft.generate_signing_secret:  # the edge makes it before checking: this is a bug
        raise ValueError("validate_job needs the requested signing secret generated first")
    if len(secrets) > MAX_SIGNING_SECRETS:
        bad("http_request.signing.secrets", f"holds {len(secrets)} secrets; the limit is {MAX_SIGNING_SECRETS}")
    if secrets and (given := sorted(SIGNING_HEADERS & {name.lower() for name in draft.headers})):
        bad("http_request.headers", f"{given[0]!r} is set by the service when the job is signed")
    return tuple(secrets)


def _check_retry_policy(draft: JobDraft, limits: JobLimits, bad: _Bad) -> RetryPolicy:
    max_attempts = limits.default_max_attempts if draft.max_attempts is None else draft.max_attempts
    if max_attempts < 1:
        bad("retry_policy.max_attempts", "must be at least 1")
    elif max_attempts > limits.max_attempts:
        bad("retry_policy.max_attempts", f"must be at most {limits.max_attempts}")

    min_backoff = DEFAULT_MIN_BACKOFF if draft.min_backoff is None else draft.min_backoff
    max_backoff = DEFAULT_MAX_BACKOFF if draft.max_backoff is None else draft.max_backoff
    backoffs_ok = True
    for name, value in (("min_backoff", min_backoff), ("max_backoff", max_backoff)):
        if value < timedelta(0):
            bad(f"retry_policy.{name}", "must not be negative")
            backoffs_ok = False
        elif value > MAX_BACKOFF_LIMIT:
            bad(f"retry_policy.{name}", "must be at most 1 day")
            backoffs_ok = False
    if backoffs_ok and min_backoff > max_backoff:
        bad("retry_policy.min_backoff", "must not exceed max_backoff")

    multiplier = DEFAULT_MULTIPLIER if draft.multiplier is None else draft.multiplier
    if not math.isfinite(multiplier) or not 1.0 <= multiplier <= MAX_MULTIPLIER:
        bad("retry_policy.multiplier", f"must be between 1 and {MAX_MULTIPLIER:g}")

    codes = sorted(set(draft.retry_status_codes))
    for code in codes:
        if not 400 <= code <= 499:
            bad("retry_policy.retry_status_codes", f"{code} is not a 4xx status (5xx always retry)")
            break
    return RetryPolicy(
        max_attempts=max_attempts,
        min_backoff=min_backoff,
        max_backoff=max_backoff,
        multiplier=multiplier,
        retry_status_codes=tuple(codes),
    )


def _check_run_at(run_at: datetime | None, bad: _Bad) -> datetime | None:
    if run_at is None:
        return None
    if run_at.tzinfo is None:
        run_at = run_at.replace(tzinfo=UTC)
    if run_at > datetime.now(UTC) + MAX_SCHEDULE_AHEAD:
        bad("schedule.run_at", "must be within 366 days from now")
    return run_at


def _check_one_schedule_kind(draft: JobDraft, bad: _Bad) -> None:
    """run_at, cron and interval exclude each other: each one after the first is named."""
    chosen = [
        name
        for name, value in (
            ("run_at", draft.run_at),
            ("cron", draft.schedule.cron_expression),
            ("interval", draft.schedule.interval),
        )
        if value is not None
    ]
    for extra in chosen[1:]:
        bad(f"schedule.{extra}", f"cannot be set together with {chosen[0]}: set only one of run_at, cron or interval")


def _check_schedule(draft: ScheduleDraft, max_catch_up: int, bad: _Bad) -> RecurringSchedule | None:
    if not draft.recurring:
        if draft.has_recurring_options:
            bad("schedule", "overlap_policy, catch_up_*, start_time, end_time and max_runs need a cron or interval")
        return None
    ok = True
    cron: CronSpec | None = None
    if draft.cron_expression is not None:
        time_zone = draft.time_zone or "UTC"
        if problem := cron_error(draft.cron_expression):
            bad("schedule.cron.expression", f"{draft.cron_expression[:100]!r}: {problem}")
            ok = False
        if problem := time_zone_error(time_zone):
            bad("schedule.cron.time_zone", problem)
            ok = False
        cron = CronSpec(draft.cron_expression.strip(), time_zone)
    if draft.interval is not None and not MIN_INTERVAL <= draft.interval <= MAX_INTERVAL:
        bad("schedule.interval", "must be at least 1s and at most 366 days")
        ok = False
    overlap = _enum(OverlapPolicy, draft.overlap, OverlapPolicy.SKIP, "schedule.overlap_policy", bad)
    catch_up = _enum(CatchUpPolicy, draft.catch_up, CatchUpPolicy.SKIP_MISSED, "schedule.catch_up_policy", bad)
    limit = draft.catch_up_limit or DEFAULT_CATCH_UP_LIMIT
    if not 0 <= draft.catch_up_limit <= max_catch_up:
        bad("schedule.catch_up_limit", f"must be between 0 (default {DEFAULT_CATCH_UP_LIMIT}) and {max_catch_up}")
        ok = False
    if catch_up is CatchUpPolicy.SKIP_MISSED:
        limit = 1
    start, end = _utc(draft.start_time), _utc(draft.end_time)
    latest = datetime.now(UTC) + MAX_WINDOW_AHEAD
    outside = [
        name
        for name, value in (("start_time", start), ("end_time", end))
        if value is not None and not EARLIEST_SCHEDULE_TIME <= value <= latest
    ]
    if outside:  # then comparing the two says nothing more
        for name in outside:
            bad(f"schedule.{name}", f"must be between 1970-01-01 and 100 years from now ({latest:%Y-%m-%d})")
        ok = False
    elif start is not None and end is not None and end <= start:
        bad("schedule.end_time", "must be after start_time")
        ok = False
    elif end is not None and end <= datetime.now(UTC):
        bad("schedule.end_time", "must be in the future")
        ok = False
    if draft.max_runs < 0:
        bad("schedule.max_runs", "must not be negative (0 means no limit)")
        ok = False
    if not ok or overlap is None or catch_up is None:
        return None
    return RecurringSchedule(
        cron=cron,
        interval=draft.interval if cron is None else None,
        overlap=overlap,
        catch_up=catch_up,
        catch_up_limit=limit,
        start_time=start,
        end_time=end,
        max_runs=draft.max_runs or None,
    )


_E = TypeVar("_E", OverlapPolicy, CatchUpPolicy)


def _enum(kind: type[_E], name: str | None, default: _E, path: str, bad: _Bad) -> _E | None:
    if name is None:
        return default
    try:
        return kind(name)
    except ValueError:
        bad(path, f"unknown value {name!r}")
        return None


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _check_labels(labels: dict[str, str], max_labels: int, bad: _Bad) -> None:
    if len(labels) > max_labels:
        bad("labels", f"has {len(labels)} labels; the limit is {max_labels}")
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key):
            bad("labels", f"key {key[:64]!r} must be 1-63 lowercase letters, digits, '-' or '_', letter first")
        elif not _LABEL_VALUE.fullmatch(value):
            bad("labels", f"value of {key!r} must be at most 63 lowercase letters, digits, '-' or '_'")
