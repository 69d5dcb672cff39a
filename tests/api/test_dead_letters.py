"""Dead letters: listed newest first with filters and paging, replayed by id or by filter (once
each), purged by filter."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest

from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import queue_service_pb2 as qapi
from jobscheduler.v1 import queue_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import create, field_violations, http_job, wait_terminal
from tests.support.processes import ChildProcess, settings_env

pytestmark = pytest.mark.usefixtures("api")


async def test_dead_letters_are_listed_replayed_once_and_purged(settings, channel, stub, target, tmp_path: Path):
    queues = queue_service_pb2_grpc.QueueServiceStub(channel)
    key = uuid.uuid4().hex[:8]
    queue = f"dead-{key}"
    by_queue = qapi.DeadLetterFilter(queue=queue)
    env = settings_env(settings.model_copy(update={"worker_queue": queue}), WORKER_HEALTH_FILE=str(tmp_path / "w"))
    worker = ChildProcess("jobs_worker", env, tmp_path / "worker.log")
    try:
        await worker.wait_for_log("ready on queue")
        # Each target fails its first request only: dead after one attempt, fine when replayed.
        dead = []
        for i in range(3):
            job = http_job(
                target.url(f"/flaky/{key}-{i}?fail=1"), queue=queue, retry_policy=pb.RetryPolicy(max_attempts=1)
            )
            execution = await wait_terminal(stub, (await create(stub, job)).last_execution.id)
            assert execution.state == pb.EXECUTION_STATE_DEAD
            dead.append(execution.id)

        first = await queues.ListDeadLetters(qapi.ListDeadLettersRequest(filter=by_queue, page_size=2))
        rest = await queues.ListDeadLetters(
            qapi.ListDeadLettersRequest(filter=by_queue, page_size=2, page_token=first.next_page_token)
        )
        assert [e.id for e in [*first.executions, *rest.executions]] == dead[::-1]
        assert rest.next_page_token == ""
        with pytest.raises(grpc.aio.AioRpcError) as other_filter:
            await queues.ListDeadLetters(qapi.ListDeadLettersRequest(page_token=first.next_page_token))
        assert "page_token" in field_violations(other_filter.value)
        by_kind = qapi.DeadLetterFilter(queue=queue, error_kind=pb.ERROR_KIND_TIMEOUT)
        assert not (await queues.ListDeadLetters(qapi.ListDeadLettersRequest(filter=by_kind))).executions
        by_kind.error_kind = pb.ERROR_KIND_HTTP_STATUS
        assert len((await queues.ListDeadLetters(qapi.ListDeadLettersRequest(filter=by_kind))).executions) == 3

        by_id = await queues.ReplayDeadLetters(qapi.ReplayDeadLettersRequest(ids=[dead[0]]))
        [replay] = by_id.executions
        assert replay.replay_of == dead[0]
        assert (await wait_terminal(stub, replay.id)).state == pb.EXECUTION_STATE_SUCCEEDED
        again = await queues.ReplayDeadLetters(qapi.ReplayDeadLettersRequest(ids=[dead[0], str(uuid.uuid4())]))
        assert not again.executions
        assert len(again.skipped_ids) == 2

        by_filter = await queues.ReplayDeadLetters(qapi.ReplayDeadLettersRequest(filter=by_queue, limit=1))
        assert [e.replay_of for e in by_filter.executions] == [dead[2]]  # newest first
        await wait_terminal(stub, by_filter.executions[0].id)
        left = await queues.ListDeadLetters(qapi.ListDeadLettersRequest(filter=by_queue))
        assert [e.id for e in left.executions] == [dead[1]]

        purged_job = (await stub.GetExecution(api.GetExecutionRequest(id=dead[1]))).execution.job_id
        purged = await queues.PurgeDeadLetters(qapi.PurgeDeadLettersRequest(filter=by_queue))
        assert purged.purged == 1
        assert not (await queues.ListDeadLetters(qapi.ListDeadLettersRequest(filter=by_queue))).executions
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await stub.GetExecution(api.GetExecutionRequest(id=dead[1]))
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
        # Its job is still there, without a last execution.
        assert not (await stub.GetJob(api.GetJobRequest(id=purged_job))).job.HasField("last_execution")

        # A replay that dies too is the one dead letter; purging it takes the one it replayed
        # along, which would otherwise be a dead letter again.
        job = http_job(target.url(f"/status/500/{key}"), queue=queue, retry_policy=pb.RetryPolicy(max_attempts=1))
        original = await wait_terminal(stub, (await create(stub, job)).last_execution.id)
        [replay] = (await queues.ReplayDeadLetters(qapi.ReplayDeadLettersRequest(ids=[original.id]))).executions
        assert (await wait_terminal(stub, replay.id)).state == pb.EXECUTION_STATE_DEAD
        listed = await queues.ListDeadLetters(qapi.ListDeadLettersRequest(filter=by_queue))
        assert [e.id for e in listed.executions] == [replay.id]
        assert (await queues.PurgeDeadLetters(qapi.PurgeDeadLettersRequest(filter=by_queue))).purged == 1
        assert not (await queues.ListDeadLetters(qapi.ListDeadLettersRequest(filter=by_queue))).executions
        for gone_id in (original.id, replay.id):
            with pytest.raises(grpc.aio.AioRpcError) as gone:
                await stub.GetExecution(api.GetExecutionRequest(id=gone_id))
            assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await worker.stop()


async def test_dead_letter_arguments_are_checked(channel):
    queues = queue_service_pb2_grpc.QueueServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await queues.ReplayDeadLetters(qapi.ReplayDeadLettersRequest(ids=["nope"]))
    assert "ids[0]" in field_violations(bad.value)
    with pytest.raises(grpc.aio.AioRpcError) as bad_limit:
        await queues.PurgeDeadLetters(qapi.PurgeDeadLettersRequest(limit=-1))
    assert "limit" in field_violations(bad_limit.value)
    with pytest.raises(grpc.aio.AioRpcError) as bad_filter:
        await queues.ListDeadLetters(qapi.ListDeadLettersRequest(filter=qapi.DeadLetterFilter(job_id="x")))
    assert "filter.job_id" in field_violations(bad_filter.value)
    # A timestamp protobuf can carry but a clock cannot: INVALID_ARGUMENT, not INTERNAL.
    out_of_range = qapi.DeadLetterFilter()
    out_of_range.end_time_after.seconds = 10**15
    with pytest.raises(grpc.aio.AioRpcError) as bad_time:
        await queues.ListDeadLetters(qapi.ListDeadLettersRequest(filter=out_of_range))
    assert bad_time.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "filter.end_time_after" in field_violations(bad_time.value)
