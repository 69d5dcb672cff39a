"""QueueService: queues listed, a queue's figures, and a pause that holds new work (first attempts
and retries) while running calls finish, outlives Redis's data, and ends with ResumeQueue."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from redis.asyncio import Redis

from jobs_common.arq_extension import paused_key
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import queue_service_pb2 as qapi
from jobscheduler.v1 import queue_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import create, field_violations, http_job, wait_for_state, wait_terminal
from tests.support.processes import ChildProcess, settings_env

pytestmark = pytest.mark.usefixtures("api")


@pytest.fixture
def queues(channel: grpc.aio.Channel) -> queue_service_pb2_grpc.QueueServiceAsyncStub:
    return queue_service_pb2_grpc.QueueServiceStub(channel)


def _worker(settings, tmp_path: Path, queue: str) -> ChildProcess:
    env = settings_env(settings.model_copy(update={"worker_queue": queue}), WORKER_HEALTH_FILE=str(tmp_path / "w"))
    return ChildProcess("jobs_worker", env, tmp_path / "worker.log")


async def _state(stub, execution_id: str) -> int:
    return (await stub.GetExecution(api.GetExecutionRequest(id=execution_id))).execution.state


async def test_a_paused_queue_accepts_jobs_runs_none_and_survives_losing_redis(
    settings, stub, queues, target, tmp_path: Path
):
    key = uuid.uuid4().hex[:8]
    queue = f"pause-{key}"
    worker = _worker(settings, tmp_path, queue)
    try:
        await worker.wait_for_log("ready on queue")
        # A call under way when the pause comes finishes.
        running = await create(stub, http_job(target.url(f"/sleep/2/{key}-running"), queue=queue))
        await wait_for_state(stub, running.last_execution.id, {pb.EXECUTION_STATE_RUNNING})
        paused = (await queues.PauseQueue(qapi.PauseQueueRequest(name=queue))).queue
        assert paused.paused
        assert paused.HasField("pause_time")

        held = await create(stub, http_job(target.url(f"/ok/{key}-held"), queue=queue))
        assert (await wait_terminal(stub, running.last_execution.id, timeout=10)).state == pb.EXECUTION_STATE_SUCCEEDED
        # Redis loses the pause (as after a restart without persistence): the worker's claim in
        # PostgreSQL still refuses the job, and the reconciler (every second in tests) sets the key
        # again from PostgreSQL.
        redis = Redis(host=settings.redis_host, port=settings.redis_port, db=settings.redis_db)
        try:
            await redis.delete(paused_key(queue))
            await asyncio.sleep(2.5)
            assert await redis.exists(paused_key(queue))
        finally:
            await redis.aclose()
        assert await _state(stub, held.last_execution.id) == pb.EXECUTION_STATE_QUEUED
        assert target.received(f"/ok/{key}-held") == []

        stats = await queues.GetQueueStats(qapi.GetQueueStatsRequest(name=queue))
        assert (stats.queue.paused, stats.queued, stats.running, stats.scheduled, stats.retry_scheduled) == (
            True, 1, 0, 0, 0,
        )  # fmt: skip
        # The call that finished during the pause, as its worker reported it with its heartbeat.
        assert (stats.started_last_minute, stats.succeeded_last_minute, stats.failed_last_minute) == (1, 1, 0)
        assert (stats.started_last_hour, stats.attempt_duration_sample) == (1, 1)
        assert stats.attempt_duration_p50.ToTimedelta().total_seconds() >= 2
        assert stats.oldest_ready_age.ToTimedelta().total_seconds() > 1
        listed = {q.name: q.paused for q in (await queues.ListQueues(qapi.ListQueuesRequest())).queues}
        assert listed[queue] is True

        resumed = (await queues.ResumeQueue(qapi.ResumeQueueRequest(name=queue))).queue
        assert not resumed.paused
        assert not resumed.HasField("pause_time")
        done = await wait_terminal(stub, held.last_execution.id, timeout=10)
    finally:
        await worker.stop()
    assert done.state == pb.EXECUTION_STATE_SUCCEEDED
    assert len(target.received(f"/ok/{key}-held")) == 1


async def test_queues_are_listed_from_jobs_and_from_pauses(stub, queues, target):
    key = uuid.uuid4().hex[:8]
    await create(stub, http_job(target.url(f"/ok/{key}"), queue=f"listed-{key}"))
    await queues.PauseQueue(qapi.PauseQueueRequest(name=f"prepaused-{key}"))
    listed = {q.name: q.paused for q in (await queues.ListQueues(qapi.ListQueuesRequest())).queues}
    assert listed[f"listed-{key}"] is False
    assert listed[f"prepaused-{key}"] is True
    names = [q.name for q in (await queues.ListQueues(qapi.ListQueuesRequest())).queues]
    assert names == sorted(names)


async def test_queue_errors(queues):
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await queues.GetQueueStats(qapi.GetQueueStatsRequest(name=f"never-{uuid.uuid4().hex[:8]}"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await queues.PauseQueue(qapi.PauseQueueRequest(name="Not A Queue"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "name" in field_violations(bad.value)


async def test_list_queues_pages_by_name_through_every_queue(stub, queues):
    prefix = f"paged-{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}-{i}" for i in range(5)]
    for name in names[:4]:  # named by a job; the last has settings only
        await create(stub, http_job("http://127.0.0.1:9/never", queue=name))
    await queues.UpdateQueue(
        qapi.UpdateQueueRequest(queue=qapi.Queue(name=names[4], history_retention=Duration(seconds=3600)))
    )
    listed, token, pages = [], "", 0
    while True:
        page = await queues.ListQueues(qapi.ListQueuesRequest(page_size=2, page_token=token))
        assert len(page.queues) <= 2
        listed += [queue.name for queue in page.queues]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages >= 3
    assert listed == sorted(set(listed)), "every queue once, by name"
    assert [name for name in listed if name.startswith(prefix)] == names
    # Without a page size: one page of up to 1,000, as before paging existed.
    everything = await queues.ListQueues(qapi.ListQueuesRequest())
    assert [queue.name for queue in everything.queues] == listed
    for bad in (qapi.ListQueuesRequest(page_token="not-a-token"), qapi.ListQueuesRequest(page_size=-1)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await queues.ListQueues(bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(field_violations(refused.value)) <= {"page_token", "page_size"}
