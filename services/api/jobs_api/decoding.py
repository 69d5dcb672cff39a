"""Requests protobuf cannot decode (bad UTF-8 in a string, a corrupt wire format) answer
INVALID_ARGUMENT naming the field, instead of grpcio's UNKNOWN "Exception deserializing request";
so do strings holding NUL, which no field accepts and PostgreSQL cannot store or compare.

The deserializer of each unary-request handler is replaced by one that returns a ``Refused``
marker instead of raising (or instead of a request holding NUL); the handler, run inside the
error interceptor, turns the marker into an InvalidArgumentError."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from jobs_api.interceptors import Context
from jobs_common.errors import FieldViolation, InvalidArgumentError

__all__ = ["bad_field_path", "decode_leniently", "nul_field_path"]


@dataclass(frozen=True, slots=True)
class Refused:
    """A request refused before its handler: the field at fault and what is wrong with it."""

    field: str
    description: str


def decode_leniently(handler: grpc.RpcMethodHandler[Any, Any] | None) -> grpc.RpcMethodHandler[Any, Any] | None:
    if handler is None or handler.request_streaming or handler.request_deserializer is None:
        return handler
    deserializer = handler.request_deserializer
    descriptor: Descriptor | None = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)

    def lenient(data: bytes) -> Any:
        try:
            request = deserializer(data)
        except DecodeError as exc:
            found = bad_field_path(data, descriptor) if descriptor is not None else None
            problem = str(exc).rpartition(": ")[2] or "cannot be decoded"
            return Refused(found or "(request)", f"cannot be decoded: {problem}")
        # NUL is the byte 0 in UTF-8, and a string's bytes are on the wire as they are: a request
        # without a 0 byte (most) holds no NUL, and is not walked field by field.
        if b"\x00" in data and isinstance(request, Message) and (path := nul_field_path(request)) is not None:
            return Refused(path, "must not contain NUL characters")
        return request

    if handler.unary_unary is not None:
        unary = cast(Callable[[Any, Context], Awaitable[Any]], handler.unary_unary)

        async def checked(request: Any, context: Context) -> Any:
            _raise_if_refused(request)
            return await unary(request, context)

        return grpc.unary_unary_rpc_method_handler(
            checked, request_deserializer=lenient, response_serializer=handler.response_serializer
        )
    assert handler.unary_stream is not None
    stream = cast(Callable[[Any, Context], AsyncIterator[Any]], handler.unary_stream)

    async def checked_stream(request: Any, context: Context) -> AsyncIterator[Any]:
        _raise_if_refused(request)
        async for response in stream(request, context):
            yield response

    return grpc.unary_stream_rpc_method_handler(
        checked_stream, request_deserializer=lenient, response_serializer=handler.response_serializer
    )


def _raise_if_refused(request: Any) -> None:
    if isinstance(request, Refused):
        raise InvalidArgumentError([FieldViolation(request.field, request.description)])


def nul_field_path(message: Message, prefix: str = "") -> str | None:
    """The path of the first string field (map keys and values included) holding NUL."""
    for field, value in message.ListFields():
        path = f"{prefix}.{field.name}" if prefix else field.name
        if field.type == FieldDescriptor.TYPE_STRING:
            values = value if field.is_repeated else [value]
            if any("\x00" in item for item in values):
                return path
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                if any("\x00" in str(key) or "\x00" in str(item) for key, item in value.items()):
                    return path
                continue
            items = value if field.is_repeated else [value]
            for item in items:
                if (found := nul_field_path(item, path)) is not None:
                    return found
    return None


def bad_field_path(data: bytes, descriptor: Descriptor, prefix: str = "") -> str | None:
    """The path of the first field that makes ``data`` undecodable (a string that is not UTF-8,
    or a length running past the end), or None when the wire format reads fine."""
    position = 0
    try:
        while position < len(data):
            tag, position = _varint(data, position)
            number, wire_type = tag >> 3, tag & 7
            field = descriptor.fields_by_number.get(number)
            path = (f"{prefix}.{field.name}" if prefix else field.name) if field is not None else prefix
            if wire_type == 0:
                _, position = _varint(data, position)
            elif wire_type in (1, 5):
                position += 8 if wire_type == 1 else 4
            elif wire_type == 2:
                length, position = _varint(data, position)
                chunk, position = data[position : position + length], position + length
                if len(chunk) < length:
                    return path or None
                found = _bad_in_chunk(chunk, field, path)
                if found is not None:
                    return found
            else:
                return path or None
    except IndexError:
        return prefix or None
    return None


def _bad_in_chunk(chunk: bytes, field: FieldDescriptor | None, path: str) -> str | None:
    if field is None:
        return None
    if field.type == FieldDescriptor.TYPE_STRING:
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError:
            return path
    elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
        found = bad_field_path(chunk, field.message_type, path)
        # A map's entry is not a field of its own: the map is named (job.http_request.headers).
        return path if found is not None and field.message_type.GetOptions().map_entry else found
    return None


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")
