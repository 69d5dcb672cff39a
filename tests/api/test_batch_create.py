"""BatchCreateJobs (AIP-233): every job committed in one transaction or none, every bad field
named with its request's index, request ids honoured, due executions enqueued at once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from jobs_common.arq_extension import arq_job_id, arq_queue_name
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import error_info_reason, field_violations, http_job, jobs_on_queue

pytestmark = pytest.mark.usefixtures("api")


def _queue() -> str:
    return f"batch-{uuid.uuid4().hex[:8]}"


async def test_a_batch_creates_every_job_in_order_and_enqueues_the_due_ones(stub, settings, arq_redis):
    queue = _queue()
    later = http_job("https://hooks.example.com/later", queue=queue)
    later.schedule.run_at.FromDatetime(datetime.now(UTC) + timedelta(hours=1))
    recurring = http_job("https://hooks.example.com/every", queue=queue)
    recurring.schedule.interval.seconds = 3600
    signed = http_job("https://hooks.example.com/signed", queue=queue)
    signed.http_request.signing.generate_secret = True
    now = http_job("https://hooks.example.com/now", queue=queue)
    answer = await stub.BatchCreateJobs(
        api.BatchCreateJobsRequest(requests=[api.CreateJobRequest(job=j) for j in (now, later, recurring, signed)])
    )
    jobs = answer.jobs
    assert [j.http_request.url.rsplit("/", 1)[1] for j in jobs] == ["now", "later", "every", "signed"]
    assert [j.last_execution.state for j in jobs] == [
        pb.EXECUTION_STATE_QUEUED,
        pb.EXECUTION_STATE_SCHEDULED,
        pb.EXECUTION_STATE_UNSPECIFIED,  # a recurring job's executions come from its ticks
        pb.EXECUTION_STATE_QUEUED,
    ]
    assert jobs[2].next_run_time.seconds > 0
    assert jobs[3].http_request.signing.secrets[0].startswith("whsec_")  # generated: shown once
    for job in jobs:
        assert (await stub.GetJob(api.GetJobRequest(id=job.id))).job.id == job.id
    enqueued = {
        member.decode(): score
        for member, score in await arq_redis.zrange(arq_queue_name(queue), 0, -1, withscores=True)
    }
    assert set(enqueued) == {arq_job_id(jobs[i].last_execution.id) for i in (0, 1, 3)}
    scheduled_ms = enqueued[arq_job_id(jobs[1].last_execution.id)]
    assert abs(scheduled_ms / 1000 - jobs[1].last_execution.schedule_time.seconds) < 1


async def test_one_bad_job_refuses_the_whole_batch_naming_every_bad_field(stub, settings):
    queue = _queue()
    bad_url = http_job("ftp://hooks.example.com/x", queue=queue)
    bad_attempts = http_job("https://hooks.example.com/x", queue=queue, retry_policy=pb.RetryPolicy(max_attempts=0))
    requests = [
        api.CreateJobRequest(job=http_job("https://hooks.example.com/ok", queue=queue)),
        api.CreateJobRequest(job=bad_url),
        api.CreateJobRequest(job=bad_attempts, request_id="not-a-uuid"),
        api.CreateJobRequest(),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.BatchCreateJobs(api.BatchCreateJobsRequest(requests=requests))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(refused.value)) == {
        "requests[1].job.http_request.url",
        "requests[2].request_id",
        "requests[2].job.retry_policy.max_attempts",
        "requests[3].job",
    }
    assert await jobs_on_queue(settings.database_url, queue) == 0

    refused_sizes = []
    for count in (0, 1001):
        batch = api.BatchCreateJobsRequest(requests=[api.CreateJobRequest(job=http_job("https://x.example/"))] * count)
        with pytest.raises(grpc.aio.AioRpcError) as too_many:
            await stub.BatchCreateJobs(batch)
        refused_sizes.append(field_violations(too_many.value)["requests"])
    assert refused_sizes == [
        "holds 0 requests; from 1 to 1000 are allowed",
        "holds 1001 requests; from 1 to 1000 are allowed",
    ]


async def test_request_ids_make_a_batch_idempotent(stub, settings):
    queue = _queue()
    first_id, second_id = str(uuid.uuid4()), str(uuid.uuid4())
    batch = api.BatchCreateJobsRequest(
        requests=[
            api.CreateJobRequest(job=http_job("https://hooks.example.com/a", queue=queue), request_id=first_id),
            api.CreateJobRequest(job=http_job("https://hooks.example.com/b", queue=queue), request_id=second_id),
            api.CreateJobRequest(job=http_job("https://hooks.example.com/a", queue=queue), request_id=first_id),
        ]
    )
    made = [job.id for job in (await stub.BatchCreateJobs(batch)).jobs]
    again = [job.id for job in (await stub.BatchCreateJobs(batch)).jobs]
    assert made[0] == made[2] != made[1]  # the repeated request within the batch returns the first job
    assert again == made
    assert await jobs_on_queue(settings.database_url, queue) == 2


async def test_a_request_id_reused_with_another_job_refuses_the_whole_batch(stub, settings):
    queue = _queue()
    reused = str(uuid.uuid4())
    batch = api.BatchCreateJobsRequest(
        requests=[
            api.CreateJobRequest(job=http_job("https://hooks.example.com/a", queue=queue), request_id=reused),
            api.CreateJobRequest(job=http_job("https://hooks.example.com/b", queue=queue)),
            api.CreateJobRequest(job=http_job("https://hooks.example.com/c", queue=queue), request_id=reused),
        ]
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.BatchCreateJobs(batch)
    assert raised.value.code() is grpc.StatusCode.ALREADY_EXISTS
    assert error_info_reason(raised.value) == "REQUEST_ID_REUSED"
    assert f"request_id {reused} was used before with a different request" in (raised.value.details() or "")
    assert await jobs_on_queue(settings.database_url, queue) == 0  # one transaction or none
