"""Checks of an UpdateQueue: the queue's name, its update mask and the retentions it sets."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from jobs_api.validation._fields import validate_queue_name
from jobs_common.domain import RetentionChange
from jobs_common.errors import FieldViolation, InvalidArgumentError
from jobscheduler.v1 import queue_service_pb2 as api

__all__ = ["MAX_RETENTION", "validate_queue_update"]

# The longest retention a queue may be given (0 keeps for ever, without a limit).
MAX_RETENTION = timedelta(days=36_500)
_Field = Literal["history_retention", "dead_letter_retention"]
_UPDATABLE: tuple[_Field, ...] = ("history_retention", "dead_letter_retention")
_OUTPUT_ONLY = {"name": "names the queue", "paused": "PauseQueue", "pause_time": "PauseQueue"}


def validate_queue_update(request: api.UpdateQueueRequest) -> tuple[str, RetentionChange]:
    """The queue's name and what changes. An empty mask means every retention the request sets
    (AIP-134); "*" means both (unset ones go back to the default)."""
    queue = request.queue
    name = validate_queue_name(queue.name, "queue.name")
    paths = list(request.update_mask.paths)
    if paths == ["*"]:
        paths = list(_UPDATABLE)
    elif not paths:
        paths = [field for field in _UPDATABLE if queue.HasField(field)]
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
    values = {field: _retention(queue, field, violations) for field in _UPDATABLE if field in paths}
    if violations:
        raise InvalidArgumentError(violations)
    return name, RetentionChange(
        set_history="history_retention" in values,
        history=values.get("history_retention"),
        set_dead_letters="dead_letter_retention" in values,
        dead_letters=values.get("dead_letter_retention"),
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
