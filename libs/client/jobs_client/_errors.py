"""Typed errors from the API's status: the canonical code, the message, google.rpc.ErrorInfo's
reason and google.rpc.BadRequest's field violations."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

__all__ = [
    "AlreadyExistsError",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "JobsError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "UnavailableError",
    "from_rpc_error",
]


class JobsError(Exception):
    """A call the API refused or could not answer.

    Attributes:
        code: the gRPC status code.
        message: the API's message, naming what was wrong.
        reason: google.rpc.ErrorInfo's reason (``ROLE_REQUIRED``, ``TOO_MANY_STREAMS`` ...), or "".
        field_violations: for INVALID_ARGUMENT, {field path: what is wrong with it}.
    """

    def __init__(
        self, code: grpc.StatusCode, message: str, reason: str = "", field_violations: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.reason = reason
        self.field_violations: Mapping[str, str] = MappingProxyType(dict(field_violations or {}))


class InvalidArgumentError(JobsError):
    pass


class NotFoundError(JobsError):
    pass


class AlreadyExistsError(JobsError):
    pass


class FailedPreconditionError(JobsError):
    pass


class UnauthenticatedError(JobsError):
    pass


class PermissionDeniedError(JobsError):
    pass


class ResourceExhaustedError(JobsError):
    pass


class UnavailableError(JobsError):
    """The API (or its database or Redis) did not answer; retrying later may succeed."""


_BY_CODE: dict[grpc.StatusCode, type[JobsError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: UnavailableError,
}


def from_rpc_error(error: grpc.RpcError | grpc.aio.AioRpcError) -> JobsError:
    """The typed error of a failed call (its class from the status code)."""
    if not isinstance(error, grpc.Call | grpc.aio.AioRpcError):  # e.g. a channel closed under the call
        return JobsError(grpc.StatusCode.UNKNOWN, str(error))
    code = error.code()
    reason, violations = "", {}
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else ():
        info, bad_request = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason = info.reason
        elif detail.Unpack(bad_request):
            violations.update({v.field: v.description for v in bad_request.field_violations})
    return _BY_CODE.get(code, JobsError)(code, error.details() or "", reason, violations)
