"""Checks of a CreateJob's de-duplication: its key, window and mode."""

from __future__ import annotations

from datetime import timedelta

from jobs_common.domain import Deduplication
from jobs_common.errors import FieldViolation, InvalidArgumentError
from jobscheduler.v1 import job_service_pb2 as api

__all__ = ["MAX_DEDUPLICATION_KEY", "MAX_DEDUPLICATION_WINDOW", "MIN_DEDUPLICATION_WINDOW", "validate_deduplication"]

MAX_DEDUPLICATION_KEY = 256
MIN_DEDUPLICATION_WINDOW = timedelta(seconds=1)
MAX_DEDUPLICATION_WINDOW = timedelta(days=7)
_MODES = (api.DEDUPLICATION_MODE_UNSPECIFIED, api.DEDUPLICATION_MODE_DROP, api.DEDUPLICATION_MODE_DEBOUNCE)


def validate_deduplication(message: api.Deduplication, prefix: str = "deduplication") -> Deduplication:
    violations: list[FieldViolation] = []
    if not 1 <= len(message.key) <= MAX_DEDUPLICATION_KEY:
        violations.append(FieldViolation(f"{prefix}.key", f"must be 1 to {MAX_DEDUPLICATION_KEY} characters"))
    window = timedelta(0)
    if not message.HasField("window"):
        violations.append(FieldViolation(f"{prefix}.window", "is required"))
    else:
        window = message.window.ToTimedelta()
        if not MIN_DEDUPLICATION_WINDOW <= window <= MAX_DEDUPLICATION_WINDOW:
            violations.append(FieldViolation(f"{prefix}.window", "must be from 1 s to 7 days"))
    if message.mode not in _MODES:
        violations.append(
            FieldViolation(
                f"{prefix}.mode", "must be DEDUPLICATION_MODE_DROP (or unset) or DEDUPLICATION_MODE_DEBOUNCE"
            )
        )
    if violations:
        raise InvalidArgumentError(violations)
    return Deduplication(message.key, window, debounce=message.mode == api.DEDUPLICATION_MODE_DEBOUNCE)
