"""One HTTP attempt: send the request, keep the first N bytes of the answer, classify failures.

Failures are values, not exceptions; the tree of what maps where::

    building the request fails (bad URL)   → PROTOCOL, not retried
    TimeoutError, httpx.TimeoutException   → TIMEOUT
    httpx.ConnectError caused by
        socket.gaierror                    → DNS
        ssl.SSLError                       → TLS
        anything else                      → CONNECT
    httpx.RemoteProtocolError, LocalProtocolError, DecodingError → PROTOCOL
    other httpx.TransportError (read/write errors, broken connection) → CONNECT
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass, field
from datetime import timedelta

import httpx

from jobs_common.backoff import parse_retry_after
from jobs_common.domain import ErrorKind, HttpRequestSpec
from jobs_common.tracing import TRACEPARENT

__all__ = ["ATTEMPT_HEADER", "USER_AGENT", "HttpOutcome", "perform"]

USER_AGENT = "job-scheduler/0.1 (+https://github.com/job-scheduler)"
# The attempt number (1 for the first) of this request; with Idempotency-Key (the execution id)
# it names one delivery, as Cloud Tasks' X-CloudTasks-TaskExecutionCount does.
ATTEMPT_HEADER = "X-Job-Attempt"


@dataclass(frozen=True, slots=True)
class HttpOutcome:
    status_code: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    truncated: bool = False
    error_kind: ErrorKind | None = None
    error_message: str = ""
    # False when trying again cannot help (the request itself is unusable).
    retryable: bool = True

    @property
    def retry_after(self) -> timedelta | None:
        return parse_retry_after(self.headers.get("retry-after"))


async def perform(
    client: httpx.AsyncClient,
    request: HttpRequestSpec,
    idempotency_key: str,
    attempt: int,
    timeout: timedelta,
    capture_bytes: int,
    traceparent: str | None = None,
) -> HttpOutcome:
    """Makes the call within ``timeout`` (connect, send, answer and body read together).
    ``traceparent``: the W3C trace context the request carries (it replaces the job's own)."""
    seconds = timeout.total_seconds()
    headers = {
        **request.headers,
        "Idempotency-Key": idempotency_key,
        ATTEMPT_HEADER: str(attempt),
        "User-Agent": USER_AGENT,
    }
    if traceparent is not None:
        headers = {name: value for name, value in headers.items() if name.lower() != TRACEPARENT}
        headers[TRACEPARENT] = traceparent
    try:
        built = client.build_request(
            request.method.value,
            request.url,
            headers=headers,
            content=request.body or None,
            timeout=httpx.Timeout(seconds),
        )
    except Exception as exc:  # no I/O happened: whatever failed is the request itself
        return HttpOutcome(
            error_kind=ErrorKind.PROTOCOL, error_message=f"invalid request: {_describe(exc)}", retryable=False
        )
    try:
        async with asyncio.timeout(seconds):
            response = await client.send(built, stream=True)
            try:
                body, truncated = await _read_capped(response, capture_bytes)
            finally:
                # Closing a response that was not read to the end drops its connection, so the
                # rest of a huge body is never downloaded.
                await response.aclose()
    except (TimeoutError, httpx.TimeoutException):
        return HttpOutcome(error_kind=ErrorKind.TIMEOUT, error_message=f"no complete answer within {seconds:g}s")
    except httpx.ConnectError as exc:
        return HttpOutcome(error_kind=_connect_error_kind(exc), error_message=_describe(exc))
    except (httpx.RemoteProtocolError, httpx.LocalProtocolError, httpx.DecodingError) as exc:
        return HttpOutcome(error_kind=ErrorKind.PROTOCOL, error_message=_describe(exc))
    except httpx.TransportError as exc:
        return HttpOutcome(error_kind=ErrorKind.CONNECT, error_message=_describe(exc))
    status = response.status_code
    outcome_headers = dict(response.headers.items())
    if 200 <= status < 300:
        return HttpOutcome(status, outcome_headers, body, truncated)
    message = f"HTTP {status} {response.reason_phrase}".rstrip()
    if 300 <= status < 400 and "location" in outcome_headers:
        message += f" (Location: {outcome_headers['location']}; redirects are not followed)"
    return HttpOutcome(status, outcome_headers, body, truncated, ErrorKind.HTTP_STATUS, message)


async def _read_capped(response: httpx.Response, capture_bytes: int) -> tuple[bytes, bool]:
    kept = bytearray()
    async for chunk in response.aiter_bytes():
        room = capture_bytes - len(kept)
        if len(chunk) > room:
            kept += chunk[:room]
            return bytes(kept), True
        kept += chunk
    return bytes(kept), False


def _connect_error_kind(exc: BaseException) -> ErrorKind:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return ErrorKind.DNS
        if isinstance(seen, ssl.SSLError):
            return ErrorKind.TLS
        seen = seen.__cause__ or seen.__context__
    text = str(exc).lower()
    if "name or service not known" in text or "nodename nor servname" in text or "name resolution" in text:
        return ErrorKind.DNS
    if "ssl" in text or "certificate" in text:
        return ErrorKind.TLS
    return ErrorKind.CONNECT


def _describe(exc: BaseException) -> str:
    detail = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {detail}"[:1000]
