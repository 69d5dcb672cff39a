"""No stored job stops the scheduler or makes a read answer INTERNAL (issue 18, finding 3).

A row can hold what the api would refuse today: it was written before a rule tightened, or a
library upgrade no longer understands it (a time zone tzdata dropped, a cron expression a newer
parser refuses), or someone edited it by hand. Each such job is set aside by the scheduler
(PAUSED, with its ``schedule_error``) while every other job keeps ticking, and GetJob, ListJobs
and WatchJob answer it."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from jobs_common.settings import Settings
from jobscheduler.v1 import job_service_pb2 as japi
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import create, error_info_reason, every, http_job

pytestmark = pytest.mark.usefixtures("api", "worker")

# What an old release, a library upgrade or a hand edit can leave in a recurring job's row, that
# the api would refuse today. The scheduler sets each aside; reads answer it.
KEPT = {
    "start_time in 9999": ("interval", "start_time = '9999-12-31 23:59:59+00'"),
    "start and end in 9999": ("interval", "start_time = '9999-12-31 23:59:58+00', end_time = '9999-12-31 23:59:59+00'"),
    "cron starting in 9999": ("cron", "start_time = '9999-12-31 23:59:59+00'"),
    "a time zone tzdata dropped": ("cron", "time_zone = 'Mars/Olympus_Mons'"),
    "a cron expression the parser refuses": ("cron", "cron_expression = '61 25 * * *'"),
    "an empty cron expression": ("cron", "cron_expression = ''"),
    "an interval of 100 years": ("interval", "interval_ms = 3155760000000"),
    "a catch-up limit of 2**31 - 1": ("interval", "catch_up_policy = 'RUN_ALL', catch_up_limit = 2147483647"),
    "max_runs below run_count": ("interval", "max_runs = 1, run_count = 5"),
    "a negative max_runs": ("interval", "max_runs = -3"),
    "secrets sealed with a key that is gone": ("interval", "sealed_secrets = 'v1:gone:AAAAAAAAAAAAAAAAAAAAAAAA'"),
    "secrets that are not sealed values": ("interval", "sealed_secrets = 'nonsense'"),
    "secrets in clear that are not JSON": ("interval", "sealed_secrets = 'plain:bm90IGpzb24='"),
}
# What no reader could read: the database refuses it (migration 0016's checks).
REFUSED = {
    "an interval of 0": "interval_ms = 0",
    "a negative interval": "interval_ms = -1000",
    "an interval of 10,000 years": "interval_ms = 315360000000000000",
    "an unknown overlap policy": "overlap_policy = 'SOMETIMES'",
    "an unknown catch-up policy": "catch_up_policy = 'NEVER'",
    "an unknown method": "method = 'BREW'",
    "a start in the year 10000": "start_time = '10000-01-01 00:00:00+00'",
    "a buffered tick at infinity": "buffered_tick = 'infinity'",
    "a run_at at -infinity": "run_at = '-infinity'",
}


def _job(kind: str, url: str) -> pb.Job:
    if kind == "cron":
        return http_job(url, schedule=pb.Schedule(cron=pb.CronSchedule(expression="* * * * *")))
    return http_job(url, schedule=every(60))


async def _corrupt(settings: Settings, job_id: str, assignments: str) -> bool:
    """Writes ``assignments`` into the job's row, due now so the next pass takes it; False when
    the database refuses them."""
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(f"UPDATE jobs SET next_run_time = now(), {assignments} WHERE id = :id"), {"id": job_id}
            )
    except IntegrityError:
        return False
    finally:
        await engine.dispose()
    return True


async def test_no_stored_job_stops_the_scheduler_or_breaks_a_read(settings: Settings, api, stub, target, key):
    healthy = await create(stub, http_job(target.url(f"/ok/{key}"), schedule=every(1)))
    broken: dict[str, str] = {}
    for name, (kind, assignments) in KEPT.items():
        job = await create(stub, _job(kind, target.url(f"/ok/{key}-broken")))
        assert await _corrupt(settings, job.id, assignments), name
        broken[name] = job.id
    refused = await create(stub, _job("interval", target.url(f"/ok/{key}-refused")))
    for name, assignments in REFUSED.items():
        assert not await _corrupt(settings, refused.id, assignments), name
    api.scheduler.wake()
    # Every other job still fires, pass after pass.
    deadline = time.monotonic() + 20
    while (await stub.GetJob(japi.GetJobRequest(id=healthy.id))).job.run_count < 3:
        assert time.monotonic() < deadline, "the healthy job stopped ticking"
        await asyncio.sleep(0.2)
    for name, job_id in broken.items():
        got = await stub.GetJob(japi.GetJobRequest(id=job_id))
        assert got.job.id == job_id, name
        if got.job.state == pb.JOB_STATE_PAUSED:
            assert got.job.schedule_error.startswith("the scheduler paused this job"), name
        async for first in stub.WatchJob(japi.WatchJobRequest(id=job_id)):
            assert first.job.id == job_id, name
            break
    listed = await stub.ListJobs(japi.ListJobsRequest(page_size=1000))
    assert set(broken.values()) <= {job.id for job in listed.jobs}
    # A job set aside: ResumeJob says why it cannot go on; fixed by UpdateJob, it resumes.
    lost_zone = broken["a time zone tzdata dropped"]
    assert (await stub.GetJob(japi.GetJobRequest(id=lost_zone))).job.state == pb.JOB_STATE_PAUSED
    with pytest.raises(grpc.aio.AioRpcError) as refused_resume:
        await stub.ResumeJob(japi.ResumeJobRequest(id=lost_zone))
    assert refused_resume.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info_reason(refused_resume.value) == "SCHEDULE_UNPLANNABLE"
    fixed = pb.Job(id=lost_zone, schedule=pb.Schedule(cron=pb.CronSchedule(time_zone="Europe/Paris")))
    await stub.UpdateJob(japi.UpdateJobRequest(job=fixed, update_mask=FieldMask(paths=["schedule.cron.time_zone"])))
    resumed = (await stub.ResumeJob(japi.ResumeJobRequest(id=lost_zone))).job
    assert resumed.state == pb.JOB_STATE_ACTIVE
    assert resumed.schedule_error == ""
    for job_id in [healthy.id, refused.id, *broken.values()]:
        await stub.DeleteJob(japi.DeleteJobRequest(id=job_id))
