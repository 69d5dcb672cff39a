"""The one place where failures become gRPC statuses (AIP-193).

Domain errors (:mod:`jobs_common.errors`) map to their canonical codes with a
``google.rpc.ErrorInfo`` (and a ``BadRequest`` for INVALID_ARGUMENT). A PostgreSQL or Redis that
does not answer is UNAVAILABLE. Anything else is a bug: INTERNAL, logged with its traceback.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from jobs_api.decoding import decode_leniently
from jobs_api.interceptors import Context, Continuation, wrap_handler
from jobs_common.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    JobSchedulerError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    dependency_unavailable,
)

__all__ = ["DOMAIN", "ErrorInterceptor", "abort_with", "to_status"]

logger = logging.getLogger(__name__)

DOMAIN = "jobscheduler.v1"

_CODES: dict[type[JobSchedulerError], int] = {
    InvalidArgumentError: code_pb2.INVALID_ARGUMENT,
    NotFoundError: code_pb2.NOT_FOUND,
    FailedPreconditionError: code_pb2.FAILED_PRECONDITION,
    AlreadyExistsError: code_pb2.ALREADY_EXISTS,
    UnauthenticatedError: code_pb2.UNAUTHENTICATED,
    PermissionDeniedError: code_pb2.PERMISSION_DENIED,
    ResourceExhaustedError: code_pb2.RESOURCE_EXHAUSTED,
    UnavailableError: code_pb2.UNAVAILABLE,
}


def to_status(error: JobSchedulerError) -> grpc.Status:
    status = status_pb2.Status(code=_CODES.get(type(error), code_pb2.UNKNOWN), message=error.message)
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN))
    if isinstance(error, InvalidArgumentError):
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
            ]
        )
        status.details.add().Pack(bad_request)
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


def _classify(exc: BaseException) -> JobSchedulerError | None:
    if isinstance(exc, JobSchedulerError):
        return exc
    if dependency_unavailable(exc):
        return UnavailableError(f"a dependency did not answer: {type(exc).__name__}")
    return None


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps the errors of every handler to their gRPC status."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = decode_leniently(await continuation(handler_call_details))
        return wrap_handler(handler, handler_call_details.method, _errors_mapped)


@contextlib.asynccontextmanager
async def _errors_mapped(method: str, context: Context) -> AsyncIterator[None]:
    try:
        yield
    except Exception as exc:
        await _abort(method, exc, context)


async def _abort(method: str, exc: Exception, context: Context) -> NoReturn:
    error = _classify(exc)
    if error is None:
        logger.exception("%s failed", method)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error")
    if isinstance(error, UnavailableError):
        logger.warning("%s: %s (%s)", method, error.message, exc)
    await abort_with(context, error)


async def abort_with(context: Context, error: JobSchedulerError) -> NoReturn:
    """Ends the call with ``error``'s status and details."""
    status = to_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)
