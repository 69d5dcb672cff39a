"""The reconciler: whatever Redis loses, PostgreSQL still has, and every execution still runs."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb
from tests.support import services
from tests.support.apis import private_api
from tests.support.jobs import create, eventually, every, executions_of, http_job, wait_terminal
from tests.support.processes import ChildProcess, settings_env
from tests.support.services import free_port, start_private_redis

# The session api migrates the session database that some of these tests share.
pytestmark = pytest.mark.usefixtures("api")


async def test_flushall_mid_run_loses_nothing_and_runs_nothing_twice(settings, target, tmp_path: Path):
    """500 jobs (immediate, deferred, retrying) on a stack of the test's own: its own database,
    its own Redis server, which is FLUSHALLed while the jobs run."""
    port = free_port()
    redis_server = start_private_redis(port, tmp_path)
    database = await services.create_database()
    own = settings.model_copy(
        update={
            "database_url": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
            "redis_port": port,
            "redis_db": 0,
            "worker_health_file": str(tmp_path / "worker.health"),
        }
    )
    worker: ChildProcess | None = None
    try:
        await _wait_for_redis(port)
        async with private_api(own, migrate=True) as (stub, _):
            worker = ChildProcess("jobs_worker", settings_env(own), tmp_path / "worker.log")
            await worker.wait_for_log("ready on queue")
            run = uuid.uuid4().hex[:8]
            jobs: dict[str, pb.Job] = {}
            run_at = pb.Job().schedule.run_at
            run_at.FromNanoseconds(int((time.time() + 3) * 1e9))
            for i in range(500):
                if i % 10 < 4:  # immediate
                    job = http_job(target.url(f"/ok/{run}-{i}"))
                elif i % 10 < 7:  # deferred by 3 s, past the flush
                    job = http_job(target.url(f"/ok/{run}-{i}"), schedule=pb.Schedule(run_at=run_at))
                else:  # fails once, retried after 2 s, past the flush
                    job = http_job(target.url(f"/flaky/{run}-{i}?fail=1"))
                    job.retry_policy.min_backoff.FromSeconds(2)
                jobs[f"{run}-{i}"] = await create(stub, job)
            await asyncio.sleep(1)
            client = Redis(port=port)
            await client.flushall()
            await client.aclose()
            flushed_at = time.monotonic()

            finals = {key: await wait_terminal(stub, job.last_execution.id, timeout=60) for key, job in jobs.items()}
            recovered_in = time.monotonic() - flushed_at
            assert Counter(pb.ExecutionState.Name(e.state) for e in finals.values()) == {
                "EXECUTION_STATE_SUCCEEDED": 500
            }
            for key, execution in finals.items():
                path = f"/flaky/{key}" if "flaky" in jobs[key].http_request.url else f"/ok/{key}"
                successes = [a for a in (await _attempts(stub, execution.id)) if a.response_status_code == 200]
                assert len(successes) == 1, key
                assert len(target.received(path)) == (2 if "flaky" in path else 1), key
            print(f"500 jobs settled {recovered_in:.1f}s after FLUSHALL")
    finally:
        if worker is not None:
            await worker.stop()
        redis_server.terminate()
        redis_server.wait(10)
        await services.drop_database(database)


async def test_an_enqueue_lost_after_the_commit_still_runs(settings, stub, target, worker, key, tmp_path: Path):
    """An api replica whose Redis dies after it started: CreateJob commits, answers OK, and
    cannot enqueue. The reconciler (of the session api) dispatches the execution."""
    port = free_port()
    redis_server = start_private_redis(port, tmp_path)
    await _wait_for_redis(port)
    broken = settings.model_copy(update={"redis_port": port, "redis_db": 0, "reconciler_enabled": False})
    async with private_api(broken) as (replica, _):
        redis_server.terminate()
        redis_server.wait(10)
        job = await create(replica, http_job(target.url(f"/ok/{key}")))
        assert job.last_execution.state == pb.EXECUTION_STATE_QUEUED
    # Within the grace (2 s) and interval (1 s) of the session's reconciler, plus the call.
    done = await wait_terminal(stub, job.last_execution.id, timeout=15)
    assert done.state == pb.EXECUTION_STATE_SUCCEEDED
    assert len(target.received(f"/ok/{key}")) == 1


async def test_three_scheduler_replicas_fire_each_tick_once(settings, stub, target, worker, key):
    """Three api replicas (the session's and two more) schedule the same 12 jobs of 5 ticks each."""
    extra = settings.model_copy(update={"reconciler_enabled": False})
    async with private_api(extra), private_api(extra):
        jobs = []
        for i in range(12):
            schedule = every(1, start_in_s=1.5)
            schedule.end_time.FromNanoseconds(schedule.start_time.ToNanoseconds() + 4_000_000_000)
            jobs.append(await create(stub, http_job(target.url(f"/ok/{key}-{i}"), schedule=schedule)))

        async def all_completed() -> bool:
            states = [(await stub.GetJob(api.GetJobRequest(id=j.id))).job.state for j in jobs]
            return all(s == pb.JOB_STATE_COMPLETED for s in states)

        await eventually(all_completed, timeout=20)
    executions = [e for j in jobs for e in await executions_of(stub, j.id)]
    assert len(executions) == 60
    assert len({(e.job_id, e.tick_time.ToNanoseconds()) for e in executions}) == 60
    for e in executions:
        await wait_terminal(stub, e.id)
    assert sum(len(target.received(f"/ok/{key}-{i}")) for i in range(12)) == 60


async def _attempts(stub, execution_id: str) -> list[pb.Attempt]:
    return list((await stub.GetExecution(api.GetExecutionRequest(id=execution_id))).execution.attempts)


async def _wait_for_redis(port: int) -> None:
    client = Redis(port=port)
    try:
        await eventually(lambda: _pings(client), timeout=10)
    finally:
        await client.aclose()


async def _pings(client: Redis) -> bool:
    try:
        return bool(await client.ping())
    except (OSError, RedisError):  # refused while the server starts
        return False
