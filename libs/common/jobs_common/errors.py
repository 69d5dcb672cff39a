"""Domain errors. The api's error interceptor maps each one to a gRPC status (AIP-193).

The tree::

    JobSchedulerError
    ├── InvalidArgumentError      → INVALID_ARGUMENT + google.rpc.BadRequest (one violation per field)
    ├── NotFoundError             → NOT_FOUND
    ├── FailedPreconditionError   → FAILED_PRECONDITION
    ├── AlreadyExistsError        → ALREADY_EXISTS
    ├── UnauthenticatedError      → UNAUTHENTICATED (no valid bearer token)
    └── UnavailableError          → UNAVAILABLE (PostgreSQL or Redis did not answer)
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

__all__ = [
    "DEPENDENCY_ERRORS",
    "REDIS_ERRORS",
    "AlreadyExistsError",
    "FailedPreconditionError",
    "FieldViolation",
    "InvalidArgumentError",
    "JobSchedulerError",
    "NotFoundError",
    "UnauthenticatedError",
    "UnavailableError",
    "dependency_error_summary",
]


class JobSchedulerError(Exception):
    """Base of every error a client can be told about; ``reason`` goes into google.rpc.ErrorInfo."""

    reason: str = "UNKNOWN"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """A bad field: ``field`` is its path in the request (``job.http_request.url``)."""

    field: str
    description: str


class InvalidArgumentError(JobSchedulerError):
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation]) -> None:
        if not violations:
            raise ValueError("InvalidArgumentError needs at least one violation")
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(f"invalid request: {summary}")
        self.violations = violations


class NotFoundError(JobSchedulerError):
    reason = "NOT_FOUND"


class FailedPreconditionError(JobSchedulerError):
    reason = "FAILED_PRECONDITION"


class AlreadyExistsError(JobSchedulerError):
    reason = "ALREADY_EXISTS"


class UnauthenticatedError(JobSchedulerError):
    reason = "UNAUTHENTICATED"


class UnavailableError(JobSchedulerError):
    reason = "DEPENDENCY_UNAVAILABLE"


# What an unreachable Redis raises: a failed enqueue after a commit is logged, not raised (the
# reconciler dispatches the execution later), and the worker's poll loop waits these out.
REDIS_ERRORS = (RedisError, OSError)
# What an unreachable PostgreSQL or Redis raises (SQLAlchemy's OperationalError and
# InterfaceError are DBAPIErrors): a background loop or a worker write retries after these.
DEPENDENCY_ERRORS = (DBAPIError, *REDIS_ERRORS)


def dependency_error_summary(exc: BaseException) -> str:
    """A dependency's error on one line, as its driver put it (SQLAlchemy wraps the driver's)."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__
