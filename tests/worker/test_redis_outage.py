"""Redis going away does not end a worker: it backs off, carries on when Redis is back (here empty,
as after a restart without persistence), and jobs accepted meanwhile still run. At start-up it
warns when Redis may evict keys."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from jobscheduler.v1 import resources_pb2 as pb
from tests.support.apis import private_api
from tests.support.jobs import create, http_job, wait_terminal
from tests.support.processes import ChildProcess, settings_env
from tests.support.services import free_port, start_private_redis, wait_for_redis

pytestmark = pytest.mark.usefixtures("api")  # the session's database, migrated


async def test_a_worker_outlives_a_redis_outage_and_jobs_accepted_during_it_run(settings, target, tmp_path: Path):
    port = free_port()
    # An evicting policy, so start-up has something to warn about (Redis's default is noeviction).
    redis_args = ("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
    redis_server = start_private_redis(port, tmp_path, *redis_args)
    probe = aioredis.Redis(port=port)
    await wait_for_redis(probe)
    await probe.aclose()
    private = settings.model_copy(update={"redis_port": port, "redis_db": 0})
    worker = ChildProcess(
        "jobs_worker", settings_env(private, WORKER_HEALTH_FILE=str(tmp_path / "w")), tmp_path / "worker.log"
    )
    key = uuid.uuid4().hex[:8]
    try:
        async with private_api(private) as (stub, _):
            await worker.wait_for_log("ready on queue")
            before = await create(stub, http_job(target.url(f"/ok/{key}-before")))
            assert (await wait_terminal(stub, before.last_execution.id)).state == pb.EXECUTION_STATE_SUCCEEDED

            redis_server.kill()
            redis_server.wait()
            # Accepted while Redis is down: on record in PostgreSQL, enqueued by the reconciler later.
            during = await create(stub, http_job(target.url(f"/ok/{key}-during")))
            await worker.wait_for_log("Redis did not answer", timeout=10)
            await asyncio.sleep(3)
            assert worker.process.poll() is None, worker.log()[-2000:]

            redis_server = start_private_redis(port, tmp_path, *redis_args)
            await worker.wait_for_log("Redis answers again", timeout=20)
            after = await create(stub, http_job(target.url(f"/ok/{key}-after")))
            finals = [await wait_terminal(stub, job.last_execution.id, timeout=20) for job in (during, after)]
    finally:
        await worker.stop()
        redis_server.kill()
        redis_server.wait()

    assert [e.state for e in finals] == [pb.EXECUTION_STATE_SUCCEEDED] * 2
    assert len(target.received(f"/ok/{key}-during")) == 1
    assert "maxmemory-policy is 'allkeys-lru'" in worker.log()
