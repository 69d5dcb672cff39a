"""What every server interceptor of the api does the same way: wrap each handler (unary, server
streaming, and the client- and bidi-streaming ones such as reflection) in an async context
manager that sees the whole call."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias, cast

import grpc

__all__ = ["AroundCall", "Context", "Continuation", "split_method", "wrap_handler"]

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
# Quoted: grpc.RpcMethodHandler is generic only in the type stubs.
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]]"
# Called once per call with the full method name and the call's context; the call runs inside it.
AroundCall: TypeAlias = Callable[[str, Context], contextlib.AbstractAsyncContextManager[None]]

_Unary = Callable[[Any, Context], Awaitable[Any]]
_Stream = Callable[[Any, Context], AsyncIterator[Any]]


def split_method(full_method: str) -> tuple[str, str]:
    """(service, method) of a full method name: ``/pkg.Service/Method``."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


def wrap_handler(
    handler: grpc.RpcMethodHandler[Any, Any] | None, method: str, around: AroundCall
) -> grpc.RpcMethodHandler[Any, Any] | None:
    """``handler`` with each call run inside ``around(method, context)`` (a stream: until it ends)."""
    if handler is None:
        return None
    if handler.unary_unary is not None:
        # grpc.aio servicers are coroutines; the stubs type the handler as the sync kind.
        unary = cast(_Unary, handler.unary_unary)

        async def wrapped(request: Any, context: Context) -> Any:
            async with around(method, context):
                return await unary(request, context)

        return grpc.unary_unary_rpc_method_handler(
            wrapped, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )
    if handler.unary_stream is not None:
        stream = cast(_Stream, handler.unary_stream)

        async def wrapped_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            async with around(method, context):
                async for response in stream(request, context):
                    yield response

        return grpc.unary_stream_rpc_method_handler(
            wrapped_stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_stream is not None:  # reflection
        bidi = cast(Callable[[AsyncIterator[Any], Context], AsyncIterator[Any]], handler.stream_stream)

        async def wrapped_bidi(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
            async with around(method, context):
                async for response in bidi(requests, context):
                    yield response

        return grpc.stream_stream_rpc_method_handler(
            wrapped_bidi,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary is not None:
        collect = cast(Callable[[AsyncIterator[Any], Context], Awaitable[Any]], handler.stream_unary)

        async def wrapped_collect(requests: AsyncIterator[Any], context: Context) -> Any:
            async with around(method, context):
                return await collect(requests, context)

        return grpc.stream_unary_rpc_method_handler(
            wrapped_collect,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler
