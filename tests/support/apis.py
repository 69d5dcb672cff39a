"""api instances of a test's own, in-process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc

from jobs_api.server import running_api
from jobs_common.settings import Settings
from jobscheduler.v1 import job_service_pb2_grpc


@contextlib.asynccontextmanager
async def private_api(
    settings: Settings, *, migrate: bool = False
) -> AsyncIterator[tuple[job_service_pb2_grpc.JobServiceAsyncStub, grpc.aio.Channel]]:
    """An api of the test's own, on the session's (migrated) database unless told otherwise."""
    async with (
        running_api(settings, run_migrations=migrate) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        yield job_service_pb2_grpc.JobServiceStub(channel), channel
