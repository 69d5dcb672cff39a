"""Process-wide logging: structured (structlog) on top of the standard library's logging.

Every module logs through ``logging.getLogger(__name__)`` as usual; one handler renders each
record as a JSON object (one per line, for log collectors) or, in a terminal, as a readable
console line. What :func:`bind` binds (``job_id``, ``execution_id``, ``attempt`` in the worker)
is added to every line the current task logs, and so are the ``trace_id`` and ``span_id`` of the
current OpenTelemetry span (an RPC's, an attempt's) when there is one. URL passwords, bearer
tokens and the values of URL query strings (pre-signed URLs, ``?token=``) are masked in every
line, whatever logged them; TELEMETRY_URL_QUERIES keeps the queries.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from opentelemetry import trace

__all__ = ["QUERY_REDACTED", "bind", "configure_logging", "mask_query", "redact", "redact_url_queries"]

_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^:/@\s]*:)[^@\s]+@")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[\w\-.~+/]+=*")
_SECRET_HEADER = re.compile(
    r"(?i)\b(authorization|proxy-authorization|cookie|x-api-key)(['\"]?\s*[:=]\s*['\"]?)[^'\",}\n]+"
)


# A URL's query string, up to its fragment, a space, a quote, or a ";" that ends a clause.
_URL_QUERY = re.compile(r"""(\b[a-zA-Z][\w+.-]*://[^\s?#'"]*\?)((?:[^\s#'";]|;(?=[^\s#'"]))*)""")
QUERY_REDACTED = "REDACTED"
# What every pattern above needs to match: a text without any of these has nothing to mask (one
# search instead of four substitutions, for the most of a line's values).
_MAYBE_SECRET = re.compile(r"(?i)://|bearer|basic|authorization|cookie|x-api-key")
_keep_url_queries = False


def mask_query(query: str) -> str:
    """``a=1&b=2`` → ``a=REDACTED&b=REDACTED``: the names stay, every value goes (a part without
    ``=`` is all value)."""
    parts = []
    for part in re.split("[&;]", query):
        name, equals, _ = part.partition("=")
        parts.append(f"{name}={QUERY_REDACTED}" if equals else (QUERY_REDACTED if part else ""))
    return "&".join(parts)


def redact_url_queries(text: str) -> str:
    """The query values of every URL in ``text`` masked (:func:`mask_query`), unless
    TELEMETRY_URL_QUERIES asked to keep them (``configure_logging(keep_url_queries=True)``)."""
    if _keep_url_queries:
        return text
    return _URL_QUERY.sub(lambda match: match.group(1) + mask_query(match.group(2)), text)


def redact(text: str) -> str:
    """Masks URL passwords, URL query values, bearer/basic credentials and secret header values
    in ``text``."""
    if _MAYBE_SECRET.search(text) is None:
        return text
    text = redact_url_queries(text)
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


def configure_logging(
    level: str, log_format: str = "auto", stream: TextIO | None = None, *, keep_url_queries: bool = False
) -> None:
    """``log_format``: ``json``, ``console``, or ``auto`` (console in a terminal, JSON otherwise).
    ``keep_url_queries``: URL query values are not masked, in logs or span attributes."""
    global _keep_url_queries  # one setting of the process, read by every line and span
    _keep_url_queries = keep_url_queries
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
