"""JobService reads and writes over a real channel: idempotency, paging, not-found, delete."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import create, error_info_reason, field_violations, http_job, wait_terminal

# No worker serves this queue: jobs created here stay QUEUED, which is what these tests read.
IDLE_QUEUE = "api-tests-idle"


def idle_job(**fields: object) -> pb.Job:
    return http_job("http://127.0.0.1:9/never", queue=IDLE_QUEUE, **fields)


async def test_create_job_answers_with_the_committed_job_and_execution(stub):
    job = await create(stub, idle_job(labels={"team": "billing"}))
    uuid.UUID(job.id)
    assert job.state == pb.JOB_STATE_ACTIVE
    assert job.queue == IDLE_QUEUE
    assert job.labels == {"team": "billing"}
    assert job.timeout.seconds == 90
    assert job.retry_policy.max_attempts == 4
    assert job.http_request.method == pb.HTTP_METHOD_POST
    assert job.last_execution.state == pb.EXECUTION_STATE_QUEUED
    assert job.last_execution.job_id == job.id
    assert job.HasField("create_time")
    assert job.HasField("update_time")

    fetched = (await stub.GetJob(api.GetJobRequest(id=job.id))).job
    assert fetched == job
    execution = (await stub.GetExecution(api.GetExecutionRequest(id=job.last_execution.id))).execution
    assert execution.state == pb.EXECUTION_STATE_QUEUED
    assert execution.attempt_count == 0


async def test_request_id_makes_create_idempotent(stub):
    request_id = str(uuid.uuid4())
    first, second = await asyncio.gather(
        create(stub, idle_job(), request_id=request_id),
        create(stub, idle_job(), request_id=request_id),
    )
    third = await create(stub, idle_job(), request_id=request_id)
    assert first.id == second.id == third.id
    assert first.last_execution.id == third.last_execution.id
    executions = (await stub.ListExecutions(api.ListExecutionsRequest(job_id=first.id))).executions
    assert len(executions) == 1
    other = await create(stub, idle_job(), request_id=str(uuid.uuid4()))
    assert other.id != first.id


async def test_a_request_id_reused_with_another_job_is_refused_naming_the_first(stub):
    """As Stripe does for idempotency keys: the same request_id with a different request is a
    client bug, answered ALREADY_EXISTS with the job the first request made."""
    request_id = str(uuid.uuid4())
    first = await create(stub, idle_job(labels={"v": "1"}), request_id=request_id)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await create(stub, idle_job(labels={"v": "2"}), request_id=request_id)
    assert raised.value.code() is grpc.StatusCode.ALREADY_EXISTS
    assert error_info_reason(raised.value) == "REQUEST_ID_REUSED"
    assert first.id in (raised.value.details() or "")
    # The same request again is still a retry, answered with the first job.
    assert (await create(stub, idle_job(labels={"v": "1"}), request_id=request_id)).id == first.id


async def test_paging_through_250_jobs_100_at_a_time(stub):
    batch = uuid.uuid4().hex[:12]
    semaphore = asyncio.Semaphore(20)

    async def make(i: int) -> str:
        async with semaphore:
            return (await create(stub, idle_job(labels={"batch": batch, "n": str(i)}))).id

    created = await asyncio.gather(*(make(i) for i in range(250)))

    seen: list[pb.Job] = []
    sizes = []
    token = ""
    while True:
        page = await stub.ListJobs(api.ListJobsRequest(page_size=100, page_token=token, labels={"batch": batch}))
        sizes.append(len(page.jobs))
        seen.extend(page.jobs)
        token = page.next_page_token
        if not token:
            break
    assert sizes == [100, 100, 50]
    assert sorted(j.id for j in seen) == sorted(created)
    keys = [(j.create_time.ToNanoseconds(), j.id) for j in seen]
    assert keys == sorted(keys, reverse=True), "newest first, stable order"

    everything = await stub.ListJobs(api.ListJobsRequest(page_size=5000, labels={"batch": batch}))
    assert len(everything.jobs) == 250
    assert everything.next_page_token == ""

    first_page = await stub.ListJobs(api.ListJobsRequest(page_size=100, labels={"batch": batch}))
    with pytest.raises(grpc.aio.AioRpcError) as changed:
        await stub.ListJobs(api.ListJobsRequest(page_size=100, page_token=first_page.next_page_token))
    assert changed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in field_violations(changed.value)


async def test_list_jobs_filters_by_state_queue_and_label(stub):
    marker = uuid.uuid4().hex[:12]
    kept = await create(stub, idle_job(labels={"marker": marker}))
    deleted = await create(stub, idle_job(labels={"marker": marker}))
    await stub.DeleteJob(api.DeleteJobRequest(id=deleted.id))

    active = await stub.ListJobs(api.ListJobsRequest(labels={"marker": marker}))
    assert [j.id for j in active.jobs] == [kept.id]
    only_deleted = await stub.ListJobs(api.ListJobsRequest(labels={"marker": marker}, state=pb.JOB_STATE_DELETED))
    assert [j.id for j in only_deleted.jobs] == [deleted.id]
    other_queue = await stub.ListJobs(api.ListJobsRequest(labels={"marker": marker}, queue="elsewhere"))
    assert list(other_queue.jobs) == []


async def test_delete_job_cancels_its_unfinished_execution(stub):
    job = await create(stub, idle_job())
    deleted = (await stub.DeleteJob(api.DeleteJobRequest(id=job.id))).job
    assert deleted.state == pb.JOB_STATE_DELETED
    assert deleted.last_execution.state == pb.EXECUTION_STATE_CANCELLED
    with pytest.raises(grpc.aio.AioRpcError) as replay:
        await stub.ReplayExecution(api.ReplayExecutionRequest(id=job.last_execution.id))
    assert replay.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info_reason(replay.value) == "JOB_DELETED"


async def test_replay_of_an_unfinished_execution_is_refused(stub):
    job = await create(stub, idle_job())
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.ReplayExecution(api.ReplayExecutionRequest(id=job.last_execution.id))
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info_reason(error.value) == "EXECUTION_NOT_REPLAYABLE"


@pytest.mark.parametrize(
    "call",
    ["GetJob", "DeleteJob", "GetExecution", "CancelExecution", "ReplayExecution", "ListExecutions"],
)
async def test_unknown_ids_are_not_found(stub, call):
    missing = str(uuid.uuid4())
    requests = {
        "GetJob": api.GetJobRequest(id=missing),
        "DeleteJob": api.DeleteJobRequest(id=missing),
        "GetExecution": api.GetExecutionRequest(id=missing),
        "CancelExecution": api.CancelExecutionRequest(id=missing),
        "ReplayExecution": api.ReplayExecutionRequest(id=missing),
        "ListExecutions": api.ListExecutionsRequest(job_id=missing),
    }
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await getattr(stub, call)(requests[call])
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert missing in (error.value.details() or "")


async def test_list_jobs_by_last_execution_state_tells_failed_from_succeeded(stub, target, worker, key):
    """A COMPLETED one-off job may have succeeded or failed: the last execution's state tells."""
    labels = {"outcome-test": key[:12]}
    ok = await create(stub, http_job(target.url(f"/ok/{key}"), labels=labels))
    failing = http_job(target.url(f"/status/500/{key}"), labels=labels)
    failing.retry_policy.max_attempts = 1
    failed = await create(stub, failing)
    await wait_terminal(stub, ok.last_execution.id)
    await wait_terminal(stub, failed.last_execution.id)

    async def listed(state: pb.ExecutionState.ValueType) -> list[str]:
        request = api.ListJobsRequest(labels=labels, last_execution_state=state)
        return [job.id for job in (await stub.ListJobs(request)).jobs]

    assert await listed(pb.EXECUTION_STATE_DEAD) == [failed.id]
    assert await listed(pb.EXECUTION_STATE_SUCCEEDED) == [ok.id]
    assert await listed(pb.EXECUTION_STATE_QUEUED) == []
    both = await stub.ListJobs(api.ListJobsRequest(labels=labels, state=pb.JOB_STATE_COMPLETED))
    assert {job.id for job in both.jobs} == {ok.id, failed.id}
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListJobs(api.ListJobsRequest(last_execution_state=99))  # type: ignore[arg-type]
    assert "last_execution_state" in field_violations(raised.value)
