"""Process-wide logging: structured (structlog) on top of the standard library's logging.

Every module logs through ``logging.getLogger(__name__)`` as usual; one handler renders each
record as a JSON object (one per line, for log collectors) or, in a terminal, as a readable
console line. What :func:`bind` binds (``job_id``, ``execution_id``, ``attempt`` in the worker)
is added to every line the current task logs, and so are the ``trace_id`` and ``span_id`` of the
current OpenTelemetry span (an RPC's, an attempt's) when there is one. URL passwords and bearer
tokens are masked in every line, whatever logged them.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from opentelemetry import trace

__all__ = ["bind", "configure_logging", "redact"]

_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^:/@\s]*:)[^@\s]+@")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[\w\-.~+/]+=*")
_SECRET_HEADER = re.compile(
    r"(?i)\b(authorization|proxy-authorization|cookie|x-api-key)(['\"]?\s*[:=]\s*['\"]?)[^'\",}\n]+"
)


def redact(text: str) -> str:
    """Masks URL passwords, bearer/basic credentials and secret header values in ``text``."""
    text = _URL_PASSWORD.sub(r"\1***@", text)
    text = _SECRET_HEADER.sub(r"\1\2***", text)
    return _BEARER.sub(r"\1 ***", text)


def _redact_event(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact(value)
    return event


def _add_trace_ids(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        event.setdefault("trace_id", format(span.trace_id, "032x"))
        event.setdefault("span_id", format(span.span_id, "016x"))
    return event


def bind(**values: object) -> None:
    """Adds ``values`` to every line the current task (and the tasks it starts) logs from now on."""
    structlog.contextvars.bind_contextvars(**values)


def configure_logging(level: str, log_format: str = "auto", stream: TextIO | None = None) -> None:
    """``log_format``: ``json``, ``console``, or ``auto`` (console in a terminal, JSON otherwise)."""
    stream = stream or sys.stderr
    console = log_format == "console" or (log_format == "auto" and stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_trace_ids,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = structlog.dev.ConsoleRenderer(colors=False) if console else structlog.processors.JSONRenderer()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _redact_event,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # arq logs a line per job start/end at INFO; keep them, but httpx's per-request lines add noise.
    logging.getLogger("httpx").setLevel(logging.WARNING)
