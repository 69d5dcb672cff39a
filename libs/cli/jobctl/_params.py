"""What jobctl's options accept: durations (``30s``, ``1h30m``), times (RFC 3339 or ``+10m``),
``KEY=VALUE`` pairs, bodies (text or ``@file``) and the API's enum names in lower case. Each
turns a bad value into a usage error naming the option and what it expects."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import click

__all__ = ["BODY", "DURATION", "PAIR", "TIME", "EnumChoice", "ProtoEnum", "enum_name", "parse_duration"]

_UNITS = {"ms": timedelta(milliseconds=1), "s": timedelta(seconds=1), "m": timedelta(minutes=1)}
_UNITS |= {"h": timedelta(hours=1), "d": timedelta(days=1)}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str) -> timedelta:
    """``90s``, ``1h30m``, ``500ms``, ``2d``, ``0`` -> a timedelta; ValueError otherwise."""
    text = text.strip()
    if text == "0":
        return timedelta(0)
    parts = _PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"{text!r} is not a duration: write it like 30s, 5m, 1h30m, 500ms or 2d")
    return sum((float(number) * _UNITS[unit] for number, unit in parts), timedelta(0))


class _Duration(click.ParamType[timedelta, Any]):
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


class _Time(click.ParamType[datetime, Any]):
    """An RFC 3339 time with its offset (``2026-12-24T09:00:00Z``), or ``+DURATION`` from now
    (``+10m``), or ``-DURATION`` ago (``-24h``)."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        if text[:1] in ("+", "-"):
            try:
                offset = parse_duration(text[1:])
            except ValueError as error:
                self.fail(str(error), param, ctx)
            return datetime.now(UTC) + (offset if text[0] == "+" else -offset)
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{text!r} is not a time: give RFC 3339 (2026-12-24T09:00:00Z), +10m from now or -24h ago", param, ctx
            )
        if when.tzinfo is None:
            self.fail(f"{text!r} has no offset: add Z or +01:00 (or give +10m from now)", param, ctx)
        return when


class _Pair(click.ParamType[tuple[str, str], Any]):
    name = "key=value"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        key, equals, rest = str(value).partition("=")
        if not equals or not key.strip():
            self.fail(f"{value!r} is not KEY=VALUE", param, ctx)
        return key.strip(), rest


class _Body(click.ParamType[bytes, Any]):
    """The text itself, ``@path`` for a file's bytes, or ``@-`` for standard input."""

    name = "body"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> bytes:
        if isinstance(value, bytes):
            return value
        text = str(value)
        if not text.startswith("@"):
            return text.encode()
        if text == "@-":
            return sys.stdin.buffer.read()
        try:
            return Path(text[1:]).read_bytes()
        except OSError as error:
            self.fail(f"cannot read {text[1:]!r}: {error.strerror}", param, ctx)


class ProtoEnum(Protocol):
    """A generated proto enum class (``resources_pb2.ErrorKind``): its wrapper's lookups."""

    def items(self) -> list[tuple[str, Any]]: ...

    def Name(self, number: Any) -> str: ...


class EnumChoice(click.Choice[str]):
    """A proto enum's values in lower case without their prefix (``http_status`` for
    ``ERROR_KIND_HTTP_STATUS``); converts to the enum's number."""

    def __init__(self, enum: ProtoEnum, prefix: str) -> None:
        self.prefix = prefix
        self.numbers = {name.removeprefix(prefix).lower(): number for name, number in enum.items()}
        self.numbers.pop("unspecified", None)
        super().__init__(list(self.numbers))

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int):
            return value
        return self.numbers[super().convert(str(value).lower(), param, ctx)]


def enum_name(enum: ProtoEnum, prefix: str, number: int) -> str:
    """``ERROR_KIND_HTTP_STATUS`` -> ``http_status``, as the options spell it."""
    return enum.Name(number).removeprefix(prefix).lower()


DURATION = _Duration()
TIME = _Time()
PAIR = _Pair()
BODY = _Body()
