"""One HTTP attempt: send the request, keep the first N bytes of the answer, classify failures.

Failures are values, not exceptions; the tree of what maps where::

    building the request fails (bad URL)   → PROTOCOL, not retried
    the egress policy refuses the address  → POLICY, not retried
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
import time
import zlib
from datetime import timedelta

import httpx

from jobs_common.domain import DEFAULT_SECRET_HEADERS, ErrorKind, HttpOutcome, HttpRequestSpec
from jobs_common.signing import signature_headers
from jobs_common.tracing import TRACEPARENT
from jobs_worker._egress import EgressRefusedError

__all__ = ["ATTEMPT_HEADER", "USER_AGENT", "perform"]

BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding", "transfer-encoding"})

USER_AGENT = "job-scheduler/0.1 (+https://github.com/job-scheduler)"
# The attempt number (1 for the first) of this request; with Idempotency-Key (the execution id)
# it names one delivery, as Cloud Tasks' X-CloudTasks-TaskExecutionCount does.
ATTEMPT_HEADER = "X-Job-Attempt"


async def perform(
    client: httpx.AsyncClient,
    request: HttpRequestSpec,
    idempotency_key: str,
    attempt: int,
    timeout: timedelta,
    capture_bytes: int,
    traceparent: str | None = None,
    max_redirects: int = 0,
) -> HttpOutcome:
    """Makes the call within ``timeout`` (connect, send, answer and body read together; every
    redirect hop included). ``traceparent``: the W3C trace context the request carries (it
    replaces the job's own). Redirects are followed, up to ``max_redirects``, only when the
    job asks; every hop's connection passes the egress policy again."""
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
    if request.signing_secrets:
        headers.update(signature_headers(request.signing_secrets, idempotency_key, int(time.time()), request.body))
    hops = _Hops(client, request, headers, seconds, max_redirects if request.follow_redirects else 0)
    try:
        async with asyncio.timeout(seconds):
            response, body, truncated = await hops.send(capture_bytes)
    except _InvalidRequestError as exc:
        return HttpOutcome(error_kind=ErrorKind.PROTOCOL, error_message=str(exc), retryable=False)
    except EgressRefusedError as exc:
        return HttpOutcome(error_kind=ErrorKind.POLICY, error_message=str(exc), retryable=False)
    except (TimeoutError, httpx.TimeoutException):
        return HttpOutcome(error_kind=ErrorKind.TIMEOUT, error_message=f"no complete answer within {seconds:g}s")
    except httpx.ConnectError as exc:
        return HttpOutcome(error_kind=_connect_error_kind(exc), error_message=_describe(exc))
    except httpx.LocalProtocolError as exc:
        # Its text may quote what we tried to send (a header value): name the error only.
        return HttpOutcome(
            error_kind=ErrorKind.PROTOCOL, error_message=f"{type(exc).__name__}: the request could not be sent as HTTP"
        )
    except (httpx.RemoteProtocolError, httpx.DecodingError) as exc:
        return HttpOutcome(error_kind=ErrorKind.PROTOCOL, error_message=_describe(exc))
    except httpx.TransportError as exc:
        return HttpOutcome(error_kind=ErrorKind.CONNECT, error_message=_describe(exc))
    status = response.status_code
    outcome_headers = dict(response.headers.items())
    if 200 <= status < 300:
        return HttpOutcome(status, outcome_headers, body, truncated)
    message = f"HTTP {status} {response.reason_phrase}".rstrip()
    if 300 <= status < 400 and "location" in outcome_headers:
        why = f"after {hops.taken} redirects, the limit" if request.follow_redirects else "redirects are not followed"
        message += f" (Location: {outcome_headers['location']}; {why})"
    return HttpOutcome(status, outcome_headers, body, truncated, ErrorKind.HTTP_STATUS, message)


class _InvalidRequestError(Exception):
    """The request (or a redirect's target) cannot be sent at all; trying again cannot help."""


class _Hops:
    """One request and the redirects it follows, as a browser would: 303 (and 301/302 after a
    POST) continue as a body-less GET; credentials are not sent to another origin."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        request: HttpRequestSpec,
        headers: dict[str, str],
        seconds: float,
        max_redirects: int,
    ) -> None:
        self._client = client
        self._method = request.method.value
        self._url: str | httpx.URL = request.url
        self._headers = headers
        self._body = request.body
        self._timeout = httpx.Timeout(seconds)
        self._max_redirects = max_redirects
        # Never sent to another origin by a redirect: credentials and the job's secret headers.
        self._kept_home = DEFAULT_SECRET_HEADERS | request.secret_headers
        self.taken = 0

    async def send(self, capture_bytes: int) -> tuple[httpx.Response, bytes, bool]:
        while True:
            try:
                built = self._client.build_request(
                    self._method, self._url, headers=self._headers, content=self._body or None, timeout=self._timeout
                )
            except Exception as exc:  # no I/O happened: whatever failed is the request itself
                # Named, never quoted: the text of an encoding error holds part of a header value.
                raise _InvalidRequestError(
                    f"invalid request: its URL, headers or body cannot be sent ({type(exc).__name__})"
                ) from exc
            response = await self._client.send(built, stream=True)
            try:
                if response.has_redirect_location and self.taken < self._max_redirects:
                    self._redirect(built, response)
                    continue
                body, truncated = await _read_capped(response, capture_bytes)
                return response, body, truncated
            finally:
                # Closing a response that was not read to the end drops its connection, so the
                # rest of a huge body is never downloaded.
                await response.aclose()

    def _redirect(self, sent: httpx.Request, response: httpx.Response) -> None:
        try:
            target = sent.url.join(response.headers["location"])
        except httpx.InvalidURL as exc:
            raise _InvalidRequestError(f"redirect to an invalid URL: {_describe(exc)}") from exc
        if target.scheme not in ("http", "https"):
            raise _InvalidRequestError(f"redirect to a {target.scheme or 'relative'}: URL is not followed")
        self.taken += 1
        status = response.status_code
        if (status == 303 and self._method != "HEAD") or (status in (301, 302) and self._method == "POST"):
            self._method, self._body = "GET", b""
            self._headers = {k: v for k, v in self._headers.items() if k.lower() not in BODY_HEADERS}
        if (target.scheme, target.host, target.port) != (sent.url.scheme, sent.url.host, sent.url.port):
            self._headers = {k: v for k, v in self._headers.items() if k.lower() not in self._kept_home}
        self._url = target


async def _read_capped(response: httpx.Response, capture_bytes: int) -> tuple[bytes, bool]:
    """The first ``capture_bytes`` of the decoded body, and whether there was more. The body is
    read raw and inflated only as far as what is kept: 250 KB of gzip that would inflate to
    256 MiB cost 64 KiB here (httpx's own decoder inflates each network chunk whole)."""
    decoder = _BoundedDecoder.for_encoding(response.headers.get("content-encoding", ""))
    kept = bytearray()
    async for chunk in response.aiter_raw():
        room = capture_bytes - len(kept)
        piece = decoder.decode(chunk, room + 1)  # one byte more than fits tells it was cut
        if len(piece) > room:
            kept += piece[:room]
            return bytes(kept), True
        kept += piece
    return bytes(kept), False


class _BoundedDecoder:
    """Content-Encoding gzip or deflate, inflated at most ``limit`` bytes per call. Other or
    stacked encodings are kept as sent, as httpx does with encodings it does not know."""

    def __init__(self, wbits: int | None) -> None:
        self._wbits = wbits
        self._inflate = zlib.decompressobj(wbits) if wbits is not None else None
        self._started = False

    @classmethod
    def for_encoding(cls, content_encoding: str) -> _BoundedDecoder:
        wbits = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
        return cls(wbits.get(content_encoding.strip().lower()))

    def decode(self, data: bytes, limit: int) -> bytes:
        if self._inflate is None:
            return data
        try:
            out = self._inflate.decompress(data, limit)
        except zlib.error as exc:
            if self._wbits == zlib.MAX_WBITS and not self._started:
                # "deflate" sent without its zlib header, as some servers do (httpx allows it).
                self._wbits, self._inflate = -zlib.MAX_WBITS, zlib.decompressobj(-zlib.MAX_WBITS)
                return self.decode(data, limit)
            raise httpx.DecodingError("the compressed body is corrupt") from exc
        self._started = True
        return out


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
