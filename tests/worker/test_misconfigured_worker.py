"""A worker that cannot use PostgreSQL or Redis says so: at start it waits for them up to
WORKER_STARTUP_TIMEOUT and exits 1 naming what did not answer; later, repeated claim or record
failures fail its health check and show in jobscheduler_worker_store_errors_total."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from jobs_common.arq_extension import Dispatch, Dispatcher, create_redis_pool
from jobs_common.migrate import migrate
from tests.support import services
from tests.support.jobs import eventually
from tests.support.processes import ChildProcess, settings_env


async def _exits(process: ChildProcess, timeout: float) -> tuple[int, float]:
    started = time.monotonic()
    code = await process.wait(timeout)
    return code, time.monotonic() - started


async def test_a_wrong_database_url_ends_the_worker_with_a_clear_message(settings, tmp_path: Path):
    wrong = settings.model_copy(
        update={"database_url": "postgresql+asyncpg://postgres:hunter2@127.0.0.1:5432/no_such_database"}
    )
    env = settings_env(wrong, WORKER_STARTUP_TIMEOUT="2s", WORKER_HEALTH_FILE=str(tmp_path / "health"))
    worker = ChildProcess("jobs_worker", env, tmp_path / "worker.log")
    code, took = await _exits(worker, timeout=30)
    log = worker.log()
    assert code == 1, log
    assert took < 15, log
    assert 'database \\"no_such_database\\" does not exist' in log, log
    assert "worker not started: within 2s (WORKER_STARTUP_TIMEOUT)" in log
    assert "hunter2" not in log
    assert "ready on queue" not in log


async def test_a_database_without_the_schema_ends_the_worker(settings, tmp_path: Path):
    database = await services.create_database()
    try:
        empty = settings.model_copy(update={"database_url": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"})
        env = settings_env(empty, WORKER_STARTUP_TIMEOUT="1s", WORKER_HEALTH_FILE=str(tmp_path / "health"))
        worker = ChildProcess("jobs_worker", env, tmp_path / "worker.log")
        code, _ = await _exits(worker, timeout=30)
        assert code == 1, worker.log()
        assert "has schema revision none, this worker needs" in worker.log()
    finally:
        await services.drop_database(database)


async def test_an_unreachable_redis_ends_the_worker(settings, tmp_path: Path):
    nowhere = settings.model_copy(update={"redis_port": services.free_port()})
    env = settings_env(nowhere, WORKER_STARTUP_TIMEOUT="1s", WORKER_HEALTH_FILE=str(tmp_path / "health"))
    worker = ChildProcess("jobs_worker", env, tmp_path / "worker.log")
    code, _ = await _exits(worker, timeout=30)
    assert code == 1, worker.log()
    assert f"Redis at 127.0.0.1:{nowhere.redis_port}" in worker.log()


async def _health(env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jobs_worker.healthcheck", env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def _store_errors(port: int, operation: str) -> float:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics")
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "jobscheduler_worker_store_errors_total" and sample.labels == {"operation": operation}:
                return sample.value
    raise AssertionError("jobscheduler_worker_store_errors_total is not exported")


async def test_failing_claims_fail_the_health_check_until_postgresql_answers_again(settings, tmp_path: Path):
    database = await services.create_database()
    own = settings.model_copy(
        update={
            "database_url": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
            "worker_queue": f"misconfigured-{uuid.uuid4().hex[:8]}",
            "worker_metrics_port": services.free_port(),
        }
    )
    await migrate(own)
    env = settings_env(own, WORKER_HEALTH_FILE=str(tmp_path / "health"), WORKER_UNHEALTHY_AFTER_ERRORS="3")
    admin = create_async_engine(services.PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    redis = await create_redis_pool(own)
    worker = ChildProcess("jobs_worker", env, tmp_path / "worker.log")
    try:
        await worker.wait_for_log("ready on queue")

        async def healthy() -> bool:
            return (await _health(env))[0] == 0

        async def unhealthy() -> bool:
            return (await _health(env))[0] == 1

        await eventually(healthy, timeout=10)  # the first health write follows the first poll
        assert await _store_errors(own.worker_metrics_port, "claim") == 0

        async with admin.connect() as conn:  # PostgreSQL now refuses this worker
            await conn.execute(text(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false'))
            await conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"), {"d": database}
            )
        await Dispatcher(redis).dispatch([Dispatch(uuid.uuid4(), own.worker_queue) for _ in range(3)])
        await eventually(unhealthy, timeout=20)
        code, out = await _health(env)
        assert code == 1
        assert "claims or records in a row failed; the last: claim:" in out, out
        assert await _store_errors(own.worker_metrics_port, "claim") >= 3

        async with admin.connect() as conn:
            await conn.execute(text(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true'))
        await eventually(healthy, timeout=20)  # the redelivered claims now reach PostgreSQL
    finally:
        await worker.stop()
        await redis.aclose()
        await admin.dispose()
        await services.drop_database(database)
