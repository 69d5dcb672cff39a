"""Domain errors. The api's error interceptor maps each one to a gRPC status (AIP-193).

The tree::

    JobSchedulerError
    ├── InvalidArgumentError      → INVALID_ARGUMENT + google.rpc.BadRequest (one violation per field)
    ├── NotFoundError             → NOT_FOUND
    ├── FailedPreconditionError   → FAILED_PRECONDITION
    ├── AlreadyExistsError        → ALREADY_EXISTS
    ├── UnauthenticatedError      → UNAUTHENTICATED (no valid bearer token)
    ├── PermissionDeniedError     → PERMISSION_DENIED (the token's role does not allow the call)
    └── UnavailableError          → UNAVAILABLE (PostgreSQL or Redis did not answer)

Which failures of PostgreSQL and Redis mean "it did not answer" is decided here too, once:
:data:`REDIS_ERRORS` and :data:`DEPENDENCY_ERRORS` are what a loop or a worker write waits out,
:data:`LISTENER_ERRORS` what the change feed's own asyncpg connection raises, and
:func:`dependency_unavailable` tells an outage (UNAVAILABLE) from a bug (INTERNAL) for the api.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

__all__ = [
    "DEPENDENCY_ERRORS",
    "LISTENER_ERRORS",
    "NO_PRIMARY_ERRORS",
    "REDIS_ERRORS",
    "AlreadyExistsError",
    "FailedPreconditionError",
    "FieldViolation",
    "InvalidArgumentError",
    "JobSchedulerError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "UnavailableError",
    "dependency_error_summary",
    "dependency_unavailable",
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


class PermissionDeniedError(JobSchedulerError):
    reason = "PERMISSION_DENIED"


class ResourceExhaustedError(JobSchedulerError):
    reason = "RESOURCE_EXHAUSTED"


class UnavailableError(JobSchedulerError):
    reason = "DEPENDENCY_UNAVAILABLE"


# What an unreachable Redis raises: a failed enqueue after a commit is logged, not raised (the
# reconciler dispatches the execution later), and the worker's poll loop waits these out.
REDIS_ERRORS = (RedisError, OSError)
# What an unreachable PostgreSQL or Redis raises (SQLAlchemy's OperationalError and
# InterfaceError are DBAPIErrors): a background loop or a worker write retries after these.
# A pool timeout (every connection busy for SQLAlchemy's pool_timeout) is PostgreSQL not serving
# now too: thousands of calls opening at once queue for the pool.
DEPENDENCY_ERRORS = (DBAPIError, PoolTimeoutError, *REDIS_ERRORS)
# With several hosts and target_session_attrs=read-write (a primary and its standbys): none of
# them is a primary now, as between a primary's loss and a standby's promotion.
NO_PRIMARY_ERRORS = (asyncpg.exceptions.TargetServerAttributeNotMatched,)
# What a raw asyncpg connection (WatchJob's LISTEN) raises when PostgreSQL goes away.
LISTENER_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError, *NO_PRIMARY_ERRORS)

# PostgreSQL or Redis did not answer (refused, dropped, timed out), whatever the statement.
_UNANSWERED = (
    OperationalError,
    InterfaceError,
    PoolTimeoutError,
    OSError,
    TimeoutError,
    RedisConnectionError,
    RedisTimeoutError,
)
# SQLSTATE classes that mean "PostgreSQL cannot serve you now": connection exceptions (08),
# insufficient resources such as too many connections (53), and shutdown or start-up (57P01-03).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P01", "57P02", "57P03")


def dependency_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says PostgreSQL or Redis cannot serve now (an answer to retry later),
    False for anything else (a bug, or a statement PostgreSQL refused)."""
    if isinstance(exc, _UNANSWERED):
        return True
    if not isinstance(exc, DBAPIError):
        return isinstance(exc, NO_PRIMARY_ERRORS)
    if isinstance(getattr(exc.orig, "__cause__", None), NO_PRIMARY_ERRORS):
        return True  # SQLAlchemy's asyncpg adapter wraps the driver's error in one of its own
    sqlstate = str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")
    return exc.connection_invalidated or sqlstate.startswith(_UNAVAILABLE_SQLSTATES)


def dependency_error_summary(exc: BaseException) -> str:
    """A dependency's error on one line, as its driver put it (SQLAlchemy wraps the driver's)."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__
