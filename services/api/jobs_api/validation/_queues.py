"""Checks of an UpdateQueue: the queue's name, its update mask, the retentions and the rate
limits it sets."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Literal

from jobs_api.validation._fields import validate_queue_name
from jobs_common.domain import RATE_LIMIT_FIELDS, QueueChange, RateLimits
from jobs_common.errors import FieldViolation, InvalidArgumentError
from jobscheduler.v1 import queue_service_pb2 as api

__all__ = [
    "MAX_BURST_SIZE",
    "MAX_CONCURRENT_DISPATCHES",
    "MAX_DISPATCHES_PER_SECOND",
    "MAX_RETENTION",
    "validate_queue_update",
]

# The longest retention a queue may be given (0 keeps for ever, without a limit).
MAX_RETENTION = timedelta(days=36_500)
# The highest rate limits a queue may be given (0: no limit).
MAX_DISPATCHES_PER_SECOND = 10_000.0
MAX_BURST_SIZE = 100_000
MAX_CONCURRENT_DISPATCHES = 100_000
_Field = Literal["history_retention", "dead_letter_retention"]
_RETENTIONS: tuple[_Field, ...] = ("history_retention", "dead_letter_retention")
_LIMIT_PATHS = tuple(f"rate_limits.{name}" for name in RATE_LIMIT_FIELDS)
_UPDATABLE = (*_RETENTIONS, "rate_limits", *_LIMIT_PATHS)
_OUTPUT_ONLY = {"name": "names the queue", "paused": "PauseQueue", "pause_time": "PauseQueue"}


def validate_queue_update(request: api.UpdateQueueRequest) -> tuple[str, QueueChange]:
    """The queue's name and what changes. An empty mask means every field the request sets
    (AIP-134); "*" means every field (unset ones go back to the default)."""
    queue = request.queue
    name = validate_queue_name(queue.name, "queue.name")
    paths = list(request.update_mask.paths)
    if paths == ["*"]:
        paths = [*_RETENTIONS, "rate_limits"]
    elif not paths:
        paths = [field for field in _RETENTIONS if queue.HasField(field)]
        paths += ["rate_limits"] if queue.HasField("rate_limits") else []
        if not paths:
            raise InvalidArgumentError(
                [FieldViolation("update_mask", f"names nothing to change; updatable: {', '.join(_UPDATABLE)}")]
            )
    violations: list[FieldViolation] = []
    for path in paths:
        if path in _OUTPUT_ONLY:
            violations.append(FieldViolation("update_mask", f"{path!r} cannot be updated ({_OUTPUT_ONLY[path]})"))
        elif path not in _UPDATABLE:
            violations.append(
                FieldViolation("update_mask", f"unknown field {path!r}; updatable: {', '.join(_UPDATABLE)}")
            )
    values = {field: _retention(queue, field, violations) for field in _RETENTIONS if field in paths}
    limit_fields = frozenset(
        name for name in RATE_LIMIT_FIELDS if "rate_limits" in paths or f"rate_limits.{name}" in paths
    )
    limits = _rate_limits(queue.rate_limits, limit_fields, violations)
    if violations:
        raise InvalidArgumentError(violations)
    return name, QueueChange(
        set_history="history_retention" in values,
        history=values.get("history_retention"),
        set_dead_letters="dead_letter_retention" in values,
        dead_letters=values.get("dead_letter_retention"),
        set_rate_limits=limit_fields,
        rate_limits=limits,
    )


def _retention(queue: api.Queue, field: _Field, violations: list[FieldViolation]) -> timedelta | None:
    """The retention set in ``field``; None (the default) when unset."""
    if not queue.HasField(field):
        return None
    value = getattr(queue, field)
    if value.seconds < 0 or value.nanos < 0:
        violations.append(FieldViolation(f"queue.{field}", "must not be negative (0 keeps for ever)"))
    elif value.nanos:
        violations.append(FieldViolation(f"queue.{field}", "must be whole seconds"))
    elif value.seconds > MAX_RETENTION.total_seconds():
        violations.append(FieldViolation(f"queue.{field}", f"must be at most {MAX_RETENTION.days} days"))
    else:
        return timedelta(seconds=value.seconds)
    return None


def _rate_limits(message: api.RateLimits, fields: frozenset[str], violations: list[FieldViolation]) -> RateLimits:
    """The limits the mask names, checked (the others 0: they are not written)."""
    rate = message.max_dispatches_per_second if "max_dispatches_per_second" in fields else 0.0
    burst = message.max_burst_size if "max_burst_size" in fields else 0
    concurrent = message.max_concurrent_dispatches if "max_concurrent_dispatches" in fields else 0
    path = "queue.rate_limits."
    if not math.isfinite(rate) or not 0 <= rate <= MAX_DISPATCHES_PER_SECOND:
        violations.append(
            FieldViolation(
                path + "max_dispatches_per_second", f"must be between 0 (no limit) and {MAX_DISPATCHES_PER_SECOND:,.0f}"
            )
        )
    if not 0 <= burst <= MAX_BURST_SIZE:
        violations.append(
            FieldViolation(path + "max_burst_size", f"must be between 0 (the rate rounded up) and {MAX_BURST_SIZE:,}")
        )
    if not 0 <= concurrent <= MAX_CONCURRENT_DISPATCHES:
        violations.append(
            FieldViolation(
                path + "max_concurrent_dispatches", f"must be between 0 (no limit) and {MAX_CONCURRENT_DISPATCHES:,}"
            )
        )
    return RateLimits(rate, burst, concurrent)
