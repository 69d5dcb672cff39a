"""job-scheduler's Python SDK.

``AsyncJobsClient`` (asyncio) and ``JobsClient`` (plain calls) speak the gRPC API; ``Connection``
says where it is (``JOBS_API_ADDRESS``, ``JOBS_API_TOKEN``, ``JOBS_API_TLS_*``); ``http_job``,
``run_at``, ``cron``, ``every`` and ``retry_policy`` build the messages; every failed call raises a
``JobsError`` subclass. See docs/client.md.
"""

from jobs_client._async import AsyncJobsClient, dead_letter_filter
from jobs_client._builders import cron, every, http_job, retry_policy, run_at
from jobs_client._connection import DEFAULT_ADDRESS, RETRIED_METHODS, Connection
from jobs_client._describe import describe_rate_limits
from jobs_client._errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    JobsError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    from_rpc_error,
)
from jobs_client._sync import JobsClient

__all__ = [
    "DEFAULT_ADDRESS",
    "RETRIED_METHODS",
    "AlreadyExistsError",
    "AsyncJobsClient",
    "Connection",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "JobsClient",
    "JobsError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "UnavailableError",
    "cron",
    "dead_letter_filter",
    "describe_rate_limits",
    "every",
    "from_rpc_error",
    "http_job",
    "retry_policy",
    "run_at",
]
