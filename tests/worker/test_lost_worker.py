"""A worker that died mid-call leaves its execution RUNNING with an open attempt; once the lease
lapses the next delivery takes over, closes that attempt as lost, and counts it."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from jobs_worker import build_worker
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import create, http_job


async def _as_left_by_a_dead_worker(settings, execution_id: str) -> None:
    engine = create_async_engine(settings.database_url)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE executions SET state = 'RUNNING', attempt_count = 1, lease_owner = 'dead-host:1',"
                " lease_expires_at = now() - interval '1 second', start_time = now() - interval '20 seconds'"
                " WHERE id = :id"
            ),
            {"id": execution_id},
        )
        await conn.execute(
            text(
                "INSERT INTO attempts (execution_id, number, worker_id, start_time)"
                " VALUES (:id, 1, 'dead-host:1', now() - interval '20 seconds')"
            ),
            {"id": execution_id},
        )
    await engine.dispose()


async def _drain(settings, queue: str) -> None:
    worker = build_worker(settings.model_copy(update={"worker_queue": queue}), burst=True, handle_signals=False)
    try:
        await worker.async_run()
    finally:
        await worker.close()


async def test_the_lost_attempt_is_closed_and_the_call_made_again(stub, target, settings):
    queue = f"lost-{uuid.uuid4().hex[:8]}"
    path = f"/ok/{queue}"
    job = await create(stub, http_job(target.url(path), queue=queue, retry_policy=pb.RetryPolicy(max_attempts=2)))
    await _as_left_by_a_dead_worker(settings, job.last_execution.id)

    await _drain(settings, queue)

    execution = (await stub.GetExecution(api.GetExecutionRequest(id=job.last_execution.id))).execution
    assert execution.state == pb.EXECUTION_STATE_SUCCEEDED
    assert execution.attempt_count == 2
    lost, retried = execution.attempts
    assert lost.worker_id == "dead-host:1"
    assert lost.error_kind == pb.ERROR_KIND_INTERRUPTED
    assert lost.error_message == "worker lost: lease expired"
    assert lost.HasField("end_time")
    assert retried.response_status_code == 200
    assert len(target.received(path)) == 1


async def test_a_lost_attempt_uses_up_the_budget_and_ends_dead_without_a_call(stub, target, settings):
    queue = f"lost-{uuid.uuid4().hex[:8]}"
    path = f"/ok/{queue}"
    job = await create(stub, http_job(target.url(path), queue=queue, retry_policy=pb.RetryPolicy(max_attempts=1)))
    await _as_left_by_a_dead_worker(settings, job.last_execution.id)

    await _drain(settings, queue)

    execution = (await stub.GetExecution(api.GetExecutionRequest(id=job.last_execution.id))).execution
    assert execution.state == pb.EXECUTION_STATE_DEAD
    assert "all 1 attempts used (workers lost)" in execution.last_error
    assert [a.error_kind for a in execution.attempts] == [pb.ERROR_KIND_INTERRUPTED] * 2
    assert target.received(path) == []
