"""Channels that send a bearer token with every call, as a client of a secured api does: the
SDK's own (jobs_client.Connection), so the tests use what clients use."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc

from jobs_client import Connection


@contextlib.asynccontextmanager
async def bearer_channel(port: int, token: str) -> AsyncIterator[grpc.aio.Channel]:
    async with Connection(f"127.0.0.1:{port}", token).async_channel() as channel:
        yield channel
