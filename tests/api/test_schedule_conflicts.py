"""A schedule sets at most one of run_at, cron and interval: a request that sets two is
INVALID_ARGUMENT naming the field, from grpcurl as from any client, and stores nothing."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.grpcurl import grpcurl
from tests.support.jobs import create, every, field_violations, http_job, jobs_on_queue

URL = "https://hooks.example.com/conflict"
RULE = "set only one of run_at, cron or interval"


def _queue() -> str:
    return f"q-{uuid.uuid4().hex[:12]}"


def _cron_and_interval() -> pb.Schedule:
    schedule = every(30)
    schedule.cron.expression = "*/5 * * * *"
    return schedule


async def test_grpcurl_with_cron_and_interval_is_refused(api, settings):
    """The newcomer's request: grpcurl sent both and the job kept one of them."""
    queue = _queue()
    body = (
        f'{{"job": {{"http_request": {{"url": "{URL}"}}, "queue": "{queue}",'
        ' "schedule": {"cron": {"expression": "*/5 * * * *"}, "interval": "30s"}}}'
    )
    code, out = await grpcurl("-plaintext", "-d", body, f"127.0.0.1:{api.port}", "jobscheduler.v1.JobService/CreateJob")
    assert code != 0, out
    assert "Code: InvalidArgument" in out, out
    assert f"job.schedule.interval: cannot be set together with cron: {RULE}" in out, out
    assert await jobs_on_queue(settings.database_url, queue) == 0


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (("run_at", "cron"), ["job.schedule.cron"]),
        (("run_at", "interval"), ["job.schedule.interval"]),
        (("cron", "interval"), ["job.schedule.interval"]),
        (("run_at", "cron", "interval"), ["job.schedule.cron", "job.schedule.interval"]),
    ],
)
async def test_each_extra_schedule_kind_is_named(stub, settings, fields, named):
    queue = _queue()
    job = http_job(URL, queue=queue)
    if "run_at" in fields:
        job.schedule.run_at.GetCurrentTime()
    if "cron" in fields:
        job.schedule.cron.expression = "0 9 * * *"
    if "interval" in fields:
        job.schedule.interval.seconds = 60
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateJob(api.CreateJobRequest(job=job))
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(raised.value)
    assert [field for field in violations if field.startswith("job.schedule")] == named
    assert all(RULE in violations[field] for field in named)
    assert await jobs_on_queue(settings.database_url, queue) == 0


async def test_a_batch_names_the_request_that_sets_both(stub, settings):
    queue = _queue()
    batch = api.BatchCreateJobsRequest(
        requests=[
            api.CreateJobRequest(job=http_job(URL, queue=queue)),
            api.CreateJobRequest(job=http_job(URL, queue=queue, schedule=_cron_and_interval())),
        ]
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.BatchCreateJobs(batch)
    assert list(field_violations(raised.value)) == ["requests[1].job.schedule.interval"]
    assert await jobs_on_queue(settings.database_url, queue) == 0


async def test_an_update_that_adds_a_second_kind_is_refused_and_changes_nothing(stub):
    job = await create(stub, http_job(URL, schedule=every(3600)))
    update = pb.Job(id=job.id)
    update.schedule.cron.expression = "0 9 * * *"
    for mask in (FieldMask(), FieldMask(paths=["schedule.cron"])):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.UpdateJob(api.UpdateJobRequest(job=update, update_mask=mask))
        # The kinds are named in one order (run_at, cron, interval), whichever came first.
        assert field_violations(raised.value) == {"job.schedule.interval": f"cannot be set together with cron: {RULE}"}
    assert (await stub.GetJob(api.GetJobRequest(id=job.id))).job.schedule == job.schedule
    # Replacing the whole schedule switches the job from interval to cron.
    switched = await stub.UpdateJob(api.UpdateJobRequest(job=update, update_mask=FieldMask(paths=["schedule"])))
    assert switched.job.schedule.cron.expression == "0 9 * * *"
    assert not switched.job.schedule.HasField("interval")
