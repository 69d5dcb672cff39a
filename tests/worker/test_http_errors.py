"""Failure classification of one attempt, against real sockets where the machine allows it."""

from __future__ import annotations

import asyncio
import socket
import ssl
from datetime import timedelta

import httpx

from jobs_common.domain import ErrorKind, ExecutionState, HttpMethod, HttpRequestSpec, RetryPolicy, decide
from jobs_worker._http import _connect_error_kind, perform


def _error_caused_by(cause: BaseException) -> httpx.ConnectError:
    try:
        try:
            raise cause
        except BaseException as exc:
            raise httpx.ConnectError("connect failed") from exc
    except httpx.ConnectError as error:
        return error


def test_dns_and_tls_failures_are_told_apart_by_their_cause():
    # A DNS answer is one of the few things faked: the machine has no resolver to ask.
    assert _connect_error_kind(_error_caused_by(socket.gaierror(-2, "Name or service not known"))) is ErrorKind.DNS
    assert _connect_error_kind(_error_caused_by(ssl.SSLError(1, "certificate verify failed"))) is ErrorKind.TLS
    assert _connect_error_kind(_error_caused_by(ConnectionRefusedError(111, "refused"))) is ErrorKind.CONNECT


async def test_a_server_that_hangs_up_is_a_connection_error():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    async with httpx.AsyncClient() as client:
        loop = asyncio.get_running_loop()

        async def accept_and_close() -> None:
            conn, _ = await loop.sock_accept(server)
            await loop.sock_recv(conn, 65536)
            conn.close()

        server.setblocking(False)
        closer = asyncio.create_task(accept_and_close())
        outcome = await perform(
            client,
            HttpRequestSpec(HttpMethod.GET, f"http://127.0.0.1:{port}/", {}, b""),
            "exec-1",
            1,
            timedelta(seconds=5),
            1024,
        )
        await closer
    server.close()
    assert outcome.error_kind in (ErrorKind.PROTOCOL, ErrorKind.CONNECT)
    assert outcome.status_code is None


async def test_a_request_httpx_cannot_build_is_a_final_protocol_error():
    policy = RetryPolicy(
        max_attempts=5, min_backoff=timedelta(seconds=1), max_backoff=timedelta(seconds=5), multiplier=2
    )
    async with httpx.AsyncClient() as client:
        outcome = await perform(
            client,
            HttpRequestSpec(HttpMethod.GET, "http://xn--zz.com/", {}, b""),
            "exec-1",
            1,
            timedelta(seconds=5),
            1024,
        )
    assert outcome.error_kind is ErrorKind.PROTOCOL
    assert outcome.error_message.startswith("invalid request:")
    assert decide(outcome, policy, counted_attempts=1).state is ExecutionState.DEAD
