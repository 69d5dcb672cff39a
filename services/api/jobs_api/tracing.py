"""A SERVER span per RPC (OpenTelemetry RPC conventions), under the caller's W3C ``traceparent``
from the call's metadata. With tracing off, the caller's context is still made current, so what
an RPC creates is stored under it and the caller's trace reaches the target."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
from opentelemetry.trace import SpanKind, Status, StatusCode

from jobs_api.interceptors import Context, Continuation, split_method, wrap_handler
from jobs_common.tracing import TRACEPARENT, extract, tracer, tracing_enabled

__all__ = ["TracingInterceptor"]

# Server-side codes that mark the span failed (the rest are the caller's errors).
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class TracingInterceptor(grpc.aio.ServerInterceptor):
    """Put it outside the error interceptor, so the span records the status that one sets."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        return wrap_handler(await continuation(handler_call_details), handler_call_details.method, _traced)


@contextlib.asynccontextmanager
async def _traced(full_method: str, context: Context) -> AsyncIterator[None]:
    metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
    if TRACEPARENT not in metadata and not tracing_enabled():
        yield  # no span to record, no caller's trace to carry on (3 % of the api's CPU per call)
        return
    service, method = split_method(full_method)
    with tracer().start_as_current_span(
        f"{service}/{method}",
        context=extract(metadata),
        kind=SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
        # A status, not an exception, is what the caller got: set below from the context.
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield
        finally:
            code = context.code() or grpc.StatusCode.OK
            if isinstance(code, grpc.StatusCode):
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                if code in _SERVER_ERRORS:
                    span.set_status(Status(StatusCode.ERROR, code.name))
