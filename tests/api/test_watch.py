"""WatchJob: the job as it is, then every change as it commits, across api replicas; a lost
notification delays an update but never the end; errors map to their status codes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.apis import private_api
from tests.support.jobs import create, every, http_job
from tests.support.processes import ChildProcess, settings_env

pytestmark = pytest.mark.usefixtures("api")


def _queue_worker(settings, tmp_path: Path, queue: str) -> ChildProcess:
    env = settings_env(settings.model_copy(update={"worker_queue": queue}), WORKER_HEALTH_FILE=str(tmp_path / "w"))
    return ChildProcess("jobs_worker", env, tmp_path / "worker.log")


async def _collect(
    stream: grpc.aio.UnaryStreamCall[api.WatchJobRequest, api.WatchJobResponse], timeout: float
) -> list[api.WatchJobResponse]:
    """Every message until the server ends the stream (read() API: tests also read the first alone)."""

    async def read() -> list[api.WatchJobResponse]:
        messages: list[api.WatchJobResponse] = []
        while (message := await stream.read()) is not grpc.aio.EOF:
            assert isinstance(message, api.WatchJobResponse)
            messages.append(message)
        return messages

    return await asyncio.wait_for(read(), timeout)


async def test_a_watcher_on_one_replica_sees_every_change_made_through_another_and_a_worker(
    settings, stub, target, tmp_path: Path
):
    key = uuid.uuid4().hex[:8]
    queue = f"watch-{key}"
    path = f"/flaky/{key}"
    async with private_api(settings) as (replica_a, _):
        job = await create(replica_a, http_job(target.url(f"{path}?fail=1"), queue=queue))
    # No worker serves the queue yet: the watch (on the session api, replica B) starts at QUEUED.
    stream = stub.WatchJob(api.WatchJobRequest(id=job.id))
    first = await asyncio.wait_for(stream.read(), 5)
    worker = _queue_worker(settings, tmp_path, queue)
    try:
        rest = await _collect(stream, timeout=30)
    finally:
        await worker.stop()

    assert first.job.id == job.id
    assert first.execution.state == pb.EXECUTION_STATE_QUEUED
    changes = [(m.execution.state, m.execution.attempt_count) for m in rest if m.HasField("execution")]
    assert changes == [
        (pb.EXECUTION_STATE_RUNNING, 1),
        (pb.EXECUTION_STATE_RETRY_SCHEDULED, 1),
        (pb.EXECUTION_STATE_RUNNING, 2),
        (pb.EXECUTION_STATE_SUCCEEDED, 2),
    ]
    assert all(m.execution.id == job.last_execution.id for m in rest if m.HasField("execution"))
    # The job's own change comes last, and then the stream ends by itself.
    assert rest[-1].job.state == pb.JOB_STATE_COMPLETED
    assert rest[-1].job.last_execution.state == pb.EXECUTION_STATE_SUCCEEDED


async def test_the_final_state_arrives_even_when_notifications_are_lost(settings, target, tmp_path: Path):
    """The listening connection is killed while the job runs; resyncs still report the end."""
    key = uuid.uuid4().hex[:8]
    queue = f"watch-lost-{key}"
    watching = settings.model_copy(update={"watch_resync_interval": timedelta(seconds=1)})
    async with private_api(watching) as (replica, _):
        job = await create(replica, http_job(target.url(f"/sleep/1/{key}"), queue=queue))
        stream = replica.WatchJob(api.WatchJobRequest(id=job.id))
        await asyncio.wait_for(stream.read(), 5)
        engine = create_async_engine(settings.database_url)
        async with engine.connect() as conn:
            killed = await conn.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = 'job-scheduler-listen' AND datname = current_database()"
                )
            )
        await engine.dispose()
        worker = _queue_worker(settings, tmp_path, queue)
        try:
            rest = await _collect(stream, timeout=30)
        finally:
            await worker.stop()

    assert killed >= 1
    assert rest[-1].job.state == pb.JOB_STATE_COMPLETED
    assert rest[-1].job.last_execution.state == pb.EXECUTION_STATE_SUCCEEDED


async def test_watching_a_recurring_job_goes_on_until_the_client_stops(stub, target, worker, key):
    job = await create(stub, http_job(target.url(f"/ok/{key}"), schedule=every(1)))
    stream = stub.WatchJob(api.WatchJobRequest(id=job.id))
    states: list[int] = []
    async for message in stream:
        if message.HasField("execution") and message.execution.state == pb.EXECUTION_STATE_SUCCEEDED:
            states.append(message.execution.state)
            if len(states) == 2:
                break
    stream.cancel()
    await stub.DeleteJob(api.DeleteJobRequest(id=job.id))
    assert len(states) == 2


@pytest.mark.parametrize(
    ("job_id", "code"),
    [(str(uuid.uuid4()), grpc.StatusCode.NOT_FOUND), ("not-a-uuid", grpc.StatusCode.INVALID_ARGUMENT)],
)
async def test_watch_errors_have_their_status_codes(stub, job_id, code):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _collect(stub.WatchJob(api.WatchJobRequest(id=job_id)), timeout=5)
    assert raised.value.code() == code
