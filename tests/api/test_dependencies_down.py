"""PostgreSQL or Redis down: clear UNAVAILABLE answers, honest health, and nothing accepted lost."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb
from tests.support import services
from tests.support.apis import private_api
from tests.support.jobs import create, error_info_reason, http_job
from tests.support.services import free_port, start_private_redis

# The session api migrates the database these private api instances share.
pytestmark = pytest.mark.usefixtures("api")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _health(channel: grpc.aio.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return (await stub.Check(health_pb2.HealthCheckRequest(service=service))).status


async def _wait_health(channel: grpc.aio.Channel, expected: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while await _health(channel) != expected:
        assert time.monotonic() < deadline, f"health did not become {expected}"
        await asyncio.sleep(0.1)


async def test_postgresql_down_answers_unavailable_and_not_serving(settings):
    broken = settings.model_copy(update={"database_url": "postgresql+asyncpg://postgres@127.0.0.1:9/none"})
    async with private_api(broken) as (stub, channel):
        with pytest.raises(grpc.aio.AioRpcError) as create_error:
            await create(stub, http_job("http://127.0.0.1:9/x"))
        assert create_error.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_info_reason(create_error.value) == "DEPENDENCY_UNAVAILABLE"
        with pytest.raises(grpc.aio.AioRpcError) as get_error:
            await stub.GetJob(api.GetJobRequest(id="00000000-0000-0000-0000-000000000001"))
        assert get_error.value.code() == grpc.StatusCode.UNAVAILABLE
        assert await _health(channel) == NOT_SERVING
        assert await _health(channel, "jobscheduler.v1.JobService") == NOT_SERVING


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")
async def test_redis_down_keeps_accepting_jobs_on_record_and_health_follows(settings, tmp_path):
    port = free_port()
    redis_server = start_private_redis(port, tmp_path)
    try:
        await asyncio.sleep(0.3)
        private = settings.model_copy(update={"redis_port": port, "redis_db": 0})
        async with private_api(private) as (stub, channel):
            assert await _health(channel) == SERVING

            redis_server.kill()
            redis_server.wait()
            await _wait_health(channel, NOT_SERVING)

            # The job is committed before the enqueue; a failed enqueue loses nothing.
            job = await asyncio.wait_for(create(stub, http_job("http://127.0.0.1:9/x", queue="nowhere")), 15)
            execution = (await stub.GetExecution(api.GetExecutionRequest(id=job.last_execution.id))).execution
            assert execution.state == pb.EXECUTION_STATE_QUEUED

            redis_server = start_private_redis(port, tmp_path)
            await _wait_health(channel, SERVING)
    finally:
        redis_server.kill()
        redis_server.wait()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")
async def test_start_up_warns_when_redis_may_evict_jobs(settings, tmp_path, caplog):
    port = free_port()
    redis_server = start_private_redis(port, tmp_path, "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
    try:
        await asyncio.sleep(0.3)
        evicting = settings.model_copy(update={"redis_port": port, "redis_db": 0})
        async with private_api(evicting):
            pass
    finally:
        redis_server.kill()
        redis_server.wait()
    assert any("maxmemory-policy is 'allkeys-lru'" in r.getMessage() for r in caplog.records)


async def test_postgresql_refusing_connections_answers_unavailable(settings):
    """A real 'too many connections' (SQLSTATE 53300): a role allowed no connections at all."""
    role = f"jobs_limited_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(services.PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0'))
    try:
        limited_url = settings.database_url.replace("postgres@", f"{role}@", 1)
        limited = settings.model_copy(update={"database_url": limited_url})
        async with private_api(limited) as (stub, channel):
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await create(stub, http_job("http://127.0.0.1:9/x"))
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
            assert await _health(channel) == NOT_SERVING
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        await admin.dispose()
