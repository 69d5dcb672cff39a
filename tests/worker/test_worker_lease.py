"""Liveness is per worker, not per call (issue 14): while a worker holds many calls, its
heartbeat writes its own lease (one PostgreSQL row, one Redis entry) and nothing per call, and
the calls it holds are out of the queue's ready set."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from arq.constants import in_progress_key_prefix
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from jobs_common.arq_extension import arq_queue_name
from jobs_common.arq_extension._keys import held_key, worker_leases_key
from jobscheduler.v1 import job_service_pb2 as api
from tests.support.jobs import eventually, http_job, seconds
from tests.support.processes import ChildProcess, settings_env

pytestmark = pytest.mark.usefixtures("api")

CALLS = 40


async def test_the_heartbeat_renews_one_lease_however_many_calls_run(settings, stub, target, arq_redis, tmp_path: Path):
    queue = f"lease-{uuid.uuid4().hex[:8]}"
    path = f"/sleep/8/{queue}"
    env = settings_env(settings.model_copy(update={"worker_queue": queue}))
    worker = ChildProcess("jobs_worker", {**env, "WORKER_HEALTH_FILE": str(tmp_path / "w")}, tmp_path / "w.log")
    engine = create_async_engine(settings.database_url)
    try:
        await worker.wait_for_log("ready on queue")
        job = http_job(target.url(path), queue=queue, timeout=seconds(30))
        await stub.BatchCreateJobs(api.BatchCreateJobsRequest(requests=[api.CreateJobRequest(job=job)] * CALLS))
        await eventually(lambda: len(target.received(path)) == CALLS, timeout=10)

        async def snapshot() -> tuple[dict[str, str], datetime]:
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(
                        text(
                            "SELECT e.id::text, e.xmin::text FROM executions e JOIN jobs j ON j.id = e.job_id"
                            " WHERE j.queue = :queue AND e.state = 'RUNNING'"
                        ),
                        {"queue": queue},
                    )
                ).all()
                lease = await conn.scalar(
                    text("SELECT expires_at FROM worker_leases WHERE worker_id LIKE :id"), {"id": f"%:{worker.pid}"}
                )
            return dict(rows), lease

        versions, lease = await snapshot()
        [holder] = [name.decode() for name in await arq_redis.zrange(worker_leases_key(queue), 0, -1)]
        one_call = in_progress_key_prefix + (await arq_redis.hkeys(held_key(holder)))[0].decode()
        in_progress_ttl = await arq_redis.pttl(one_call)
        await asyncio.sleep(4 * settings.worker_heartbeat_interval.total_seconds())
        versions_after, lease_after = await snapshot()

        assert len(versions) == CALLS
        # No execution row was written while they waited: the one lease row was, ahead of now.
        assert versions_after == versions
        assert lease_after > lease
        # In Redis: the calls left the ready set for the worker's held hash; their in-progress
        # keys are not renewed (a backstop of arq's job timeout), the worker's lease is.
        assert await arq_redis.zcard(arq_queue_name(queue)) == 0
        assert await arq_redis.hlen(held_key(holder)) == CALLS
        assert 0 < await arq_redis.pttl(one_call) < in_progress_ttl
        seconds_now, micros = await arq_redis.time()
        assert await arq_redis.zscore(worker_leases_key(queue), holder) > seconds_now * 1000 + micros / 1000
    finally:
        await worker.stop()
        await engine.dispose()
    # A clean stop gives the lease up: nothing is left held.
    assert await arq_redis.zscore(worker_leases_key(queue), holder) is None
    assert not await arq_redis.exists(held_key(holder))
