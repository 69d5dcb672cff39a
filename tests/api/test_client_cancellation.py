"""Clients that give up mid-call (deadline, cancel) must not wedge the api, leak connections, or
leave a committed job without its dispatch."""

from __future__ import annotations

import asyncio
import uuid

import grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from jobs_common.arq_extension import arq_job_id, arq_queue_name
from jobscheduler.v1 import job_service_pb2 as api
from tests.support.jobs import create, http_job


async def test_hundreds_of_abandoned_calls_leave_the_api_healthy_and_every_commit_dispatched(stub, settings, arq_redis):
    queue = f"abandoned-{uuid.uuid4().hex[:8]}"
    job = http_job("http://127.0.0.1:9/x", queue=queue)

    async def abandon(i: int) -> grpc.StatusCode | None:
        try:
            await stub.CreateJob(api.CreateJobRequest(job=job), timeout=0.001 * (i % 20 + 1))
        except grpc.aio.AioRpcError as error:
            return error.code()
        return None

    codes = await asyncio.gather(*(abandon(i) for i in range(300)))
    assert set(codes) <= {grpc.StatusCode.DEADLINE_EXCEEDED, None}
    assert grpc.StatusCode.DEADLINE_EXCEEDED in codes

    # Every pooled connection came back: 50 concurrent calls (more than pool + overflow) succeed.
    created = await asyncio.wait_for(asyncio.gather(*(create(stub, job) for _ in range(50))), 30)
    assert len({j.id for j in created}) == 50
    for created_job in created[:3]:
        fetched = (await stub.GetJob(api.GetJobRequest(id=created_job.id))).job
        assert fetched.last_execution.id == created_job.last_execution.id

    # A call abandoned after its commit still enqueued its execution.
    await asyncio.sleep(0.5)  # abandoned calls finish on their own
    engine = create_async_engine(settings.database_url)
    async with engine.connect() as conn:
        committed = list(
            await conn.scalars(
                text("SELECT e.id FROM executions e JOIN jobs j ON j.id = e.job_id WHERE j.queue = :q"), {"q": queue}
            )
        )
    await engine.dispose()
    assert len(committed) >= 50
    enqueued = await arq_redis.zrange(arq_queue_name(queue), 0, -1)
    assert {arq_job_id(e) for e in committed} == {m.decode() for m in enqueued}
