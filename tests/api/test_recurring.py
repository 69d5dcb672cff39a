"""Recurring jobs through the API: validation, next run times, pause/resume, update, run now."""

from __future__ import annotations

import asyncio
import itertools
import time

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import (
    create,
    error_info_reason,
    eventually,
    every,
    executions_of,
    field_violations,
    http_job,
    seconds,
    wait_terminal,
)


def cron(expression: str, time_zone: str = "", **fields: object) -> pb.Schedule:
    return pb.Schedule(cron=pb.CronSchedule(expression=expression, time_zone=time_zone), **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("schedule", "field", "needle"),
    [
        (cron("61 * * * *"), "job.schedule.cron.expression", "minute"),
        (cron("* * * *"), "job.schedule.cron.expression", "5 fields"),
        (cron("@sometimes"), "job.schedule.cron.expression", "5 fields"),
        (cron("0 9 * * *", "Mars/Olympus"), "job.schedule.cron.time_zone", "unknown time zone"),
        (every(0.5), "job.schedule.interval", "at least 1s"),
        (every(60, catch_up_limit=100_000), "job.schedule.catch_up_limit", "between 0"),
        (every(60, max_runs=-1), "job.schedule.max_runs", "negative"),
        (pb.Schedule(max_runs=3), "job.schedule", "need a cron or interval"),
    ],
)
async def test_bad_schedules_name_the_field(stub, target, key, schedule, field, needle):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await create(stub, http_job(target.url(f"/ok/{key}"), schedule=schedule))
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(raised.value)
    assert needle in violations[field], violations


async def test_a_window_that_ends_before_it_starts_is_refused(stub, target, key):
    schedule = every(60, start_in_s=3600)
    schedule.end_time.FromSeconds(schedule.start_time.seconds - 60)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await create(stub, http_job(target.url(f"/ok/{key}"), schedule=schedule))
    assert field_violations(raised.value) == {"job.schedule.end_time": "must be after start_time"}


def _at(text: str) -> Timestamp:
    stamp = Timestamp()
    stamp.FromJsonString(text)
    return stamp


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        # Once answered INTERNAL: cronsim ran past the year 9999 looking for the next Feb 29.
        (cron("0 0 29 2 *", start_time=_at("9999-12-30T00:00:00Z")), "job.schedule.start_time"),
        (every(60, start_time=_at("9999-12-31T23:59:59Z")), "job.schedule.start_time"),
        (every(60, start_time=_at("0001-01-01T00:00:00Z")), "job.schedule.start_time"),
        (every(60, end_time=_at("9999-12-31T23:59:59Z")), "job.schedule.end_time"),
    ],
)
async def test_schedule_times_near_the_ends_of_the_calendar_are_refused(stub, target, key, schedule, field):
    """Times that would take fire-time arithmetic past what datetime and cronsim can represent
    are INVALID_ARGUMENT at create and update, never INTERNAL."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await create(stub, http_job(target.url(f"/ok/{key}"), schedule=schedule))
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "must be between 1970-01-01 and 100 years from now" in field_violations(raised.value)[field]
    job = await create(stub, http_job(target.url(f"/ok/{key}"), schedule=every(3600)))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.UpdateJob(api.UpdateJobRequest(job=pb.Job(id=job.id, schedule=schedule)))
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(raised.value)


async def test_a_window_years_ahead_still_previews(stub, target, key):
    schedule = cron("0 0 29 2 *", start_time=_hours_ahead(24 * 365 * 50))
    job = await create(stub, http_job(target.url(f"/ok/{key}"), schedule=schedule))
    fetched = (await stub.GetJob(api.GetJobRequest(id=job.id))).job
    assert len(fetched.upcoming_run_times) == 5
    assert all(t.ToDatetime().strftime("%m-%d") == "02-29" for t in fetched.upcoming_run_times)


async def test_get_job_shows_the_next_run_and_a_preview(stub, target, key):
    job = await create(stub, http_job(target.url(f"/ok/{key}"), schedule=cron("0 9 * * MON-FRI", "Europe/Berlin")))
    assert job.kind == pb.JOB_KIND_RECURRING
    assert job.state == pb.JOB_STATE_ACTIVE
    assert not job.HasField("last_execution")
    fetched = (await stub.GetJob(api.GetJobRequest(id=job.id))).job
    assert fetched.next_run_time == job.next_run_time
    upcoming = [t.ToDatetime() for t in fetched.upcoming_run_times]
    assert len(upcoming) == 5
    assert upcoming[0] == job.next_run_time.ToDatetime()
    assert all(t.weekday() < 5 and t.hour in (7, 8) and t.minute == 0 for t in upcoming)  # 09:00 CET/CEST in UTC
    assert fetched.schedule.cron.time_zone == "Europe/Berlin"
    assert fetched.schedule.overlap_policy == pb.OVERLAP_POLICY_SKIP


async def test_list_jobs_filters_recurring_and_one_off(stub, target, key):
    label = {"suite": key[:32]}
    recurring = await create(stub, http_job(target.url(f"/ok/{key}"), schedule=every(3600), labels=label))
    one_off = await create(stub, http_job(target.url(f"/ok/{key}"), labels=label))
    for kind, expected in ((pb.JOB_KIND_RECURRING, recurring.id), (pb.JOB_KIND_ONE_OFF, one_off.id)):
        listed = await stub.ListJobs(api.ListJobsRequest(labels=label, kind=kind))
        assert [j.id for j in listed.jobs] == [expected]
    paused = await stub.PauseJob(api.PauseJobRequest(id=recurring.id))
    listed = await stub.ListJobs(api.ListJobsRequest(labels=label, state=pb.JOB_STATE_PAUSED))
    assert [j.id for j in listed.jobs] == [paused.job.id]


async def test_an_interval_job_fires_on_time_tick_after_tick(stub, target, worker, key):
    path = f"/ok/{key}"
    job = await create(stub, http_job(target.url(path), schedule=every(1, start_in_s=1, max_runs=4)))
    await eventually(lambda: len(target.received(path)) >= 4, timeout=15)
    executions = await executions_of(stub, job.id)
    ticks = [e.tick_time.ToDatetime() for e in executions]
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(ticks)] == [1.0, 1.0, 1.0]
    assert ticks[0] == job.schedule.start_time.ToDatetime()
    for execution, received in zip(executions, target.received(path), strict=True):
        lag = received.time - execution.tick_time.ToNanoseconds() / 1e9
        assert 0 <= lag < 1.0, f"request {lag:.3f}s after its tick"

    async def completed() -> bool:  # max_runs reached, and the last run has ended
        return (await stub.GetJob(api.GetJobRequest(id=job.id))).job.state == pb.JOB_STATE_COMPLETED

    await eventually(completed, timeout=5)
    done = (await stub.GetJob(api.GetJobRequest(id=job.id))).job
    assert done.run_count == 4
    assert not done.HasField("next_run_time")


async def test_a_max_runs_job_completes_when_its_last_run_ends_not_when_it_starts(stub, target, worker, key):
    path = f"/sleep/2/{key}"
    job = await create(stub, http_job(target.url(path), schedule=every(1, start_in_s=0.5, max_runs=1)))
    await eventually(lambda: len(target.received(path)) == 1, timeout=10)
    running = (await stub.GetJob(api.GetJobRequest(id=job.id))).job
    assert running.state == pb.JOB_STATE_ACTIVE, "COMPLETED while its last run is still going"
    assert running.run_count == 1
    assert not running.HasField("next_run_time")  # no tick left
    assert running.last_execution.state == pb.EXECUTION_STATE_RUNNING
    await wait_terminal(stub, running.last_execution.id)

    async def completed() -> bool:
        return (await stub.GetJob(api.GetJobRequest(id=job.id))).job.state == pb.JOB_STATE_COMPLETED

    await eventually(completed, timeout=5)
    assert len(target.received(path)) == 1


async def test_pause_stops_ticks_and_resume_restarts_from_now(stub, target, worker, key):
    path = f"/ok/{key}"
    job = await create(stub, http_job(target.url(path), schedule=every(1, start_in_s=0.5)))
    await eventually(lambda: len(target.received(path)) >= 1, timeout=10)
    paused = (await stub.PauseJob(api.PauseJobRequest(id=job.id))).job
    assert paused.state == pb.JOB_STATE_PAUSED
    assert not paused.HasField("next_run_time")
    count = len(await executions_of(stub, job.id))
    await asyncio.sleep(2.5)
    assert len(await executions_of(stub, job.id)) == count
    resumed = (await stub.ResumeJob(api.ResumeJobRequest(id=job.id))).job
    assert resumed.state == pb.JOB_STATE_ACTIVE
    assert resumed.next_run_time.ToDatetime() > paused.update_time.ToDatetime()
    await eventually(lambda: len(target.received(path)) > count, timeout=5)
    await stub.DeleteJob(api.DeleteJobRequest(id=job.id))


async def test_pause_resume_and_run_refuse_one_off_jobs(stub, target, key):
    job = await create(stub, http_job(target.url(f"/ok/{key}"), schedule=pb.Schedule(run_at=_hours_ahead(1))))
    for call, request in (
        (stub.PauseJob, api.PauseJobRequest(id=job.id)),
        (stub.ResumeJob, api.ResumeJobRequest(id=job.id)),
        (stub.RunJob, api.RunJobRequest(id=job.id)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call(request)
        assert raised.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert error_info_reason(raised.value) == "JOB_NOT_RECURRING"


async def test_run_job_fires_now_and_honours_overlap_skip(stub, target, worker, key):
    path = f"/sleep/2/{key}"
    job = await create(stub, http_job(target.url(path), schedule=every(3600)))
    first = (await stub.RunJob(api.RunJobRequest(id=job.id))).execution
    assert first.state == pb.EXECUTION_STATE_QUEUED
    assert not first.HasField("tick_time")
    second = (await stub.RunJob(api.RunJobRequest(id=job.id))).execution
    assert second.state == pb.EXECUTION_STATE_SKIPPED
    assert first.id in second.last_error
    assert (await wait_terminal(stub, first.id)).state == pb.EXECUTION_STATE_SUCCEEDED
    assert len(target.received(path)) == 1
    fetched = (await stub.GetJob(api.GetJobRequest(id=job.id))).job
    assert fetched.run_count == 0  # runs outside the schedule do not count against max_runs


async def test_update_job_changes_the_next_tick_not_the_created_execution(stub, target, worker, key):
    old_path, new_path = f"/sleep/1/{key}-old", f"/ok/{key}-new"
    job = await create(
        stub,
        http_job(target.url(old_path), schedule=every(3600), labels={"v": "1"}),
    )
    before = (await stub.RunJob(api.RunJobRequest(id=job.id))).execution
    update = pb.Job(id=job.id, http_request=pb.HttpRequest(url=target.url(new_path)), labels={"v": "2"})
    update.schedule.CopyFrom(every(7200, overlap_policy=pb.OVERLAP_POLICY_ALLOW))
    updated = (
        await stub.UpdateJob(
            api.UpdateJobRequest(job=update, update_mask=FieldMask(paths=["http_request.url", "schedule", "labels"]))
        )
    ).job
    assert updated.http_request.url == target.url(new_path)
    assert updated.http_request.method == pb.HTTP_METHOD_POST  # not in the mask: kept
    assert updated.labels == {"v": "2"}
    assert updated.schedule.interval == seconds(7200)
    assert updated.next_run_time.ToDatetime() > job.next_run_time.ToDatetime()
    after = (await stub.RunJob(api.RunJobRequest(id=job.id))).execution
    assert (await wait_terminal(stub, before.id)).state == pb.EXECUTION_STATE_SUCCEEDED
    assert (await wait_terminal(stub, after.id)).state == pb.EXECUTION_STATE_SUCCEEDED
    assert len(target.received(old_path)) == 1
    assert len(target.received(new_path)) == 1


async def test_update_job_checks_its_mask_and_the_merged_job(stub, target, key):
    job = await create(stub, http_job(target.url(f"/ok/{key}"), schedule=every(3600)))
    cases = [
        (FieldMask(paths=["state"]), pb.Job(id=job.id), "update_mask"),
        (FieldMask(paths=["http_request.nope"]), pb.Job(id=job.id), "update_mask"),
        (FieldMask(paths=["schedule"]), pb.Job(id=job.id, schedule=cron("bad")), "job.schedule.cron.expression"),
        (FieldMask(paths=["schedule"]), pb.Job(id=job.id), "job.schedule"),  # recurring → one-off
    ]
    for mask, update, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.UpdateJob(api.UpdateJobRequest(job=update, update_mask=mask))
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert field in field_violations(raised.value), (mask, field_violations(raised.value))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.UpdateJob(api.UpdateJobRequest(job=pb.Job(id="7f1d7e53-0000-4000-8000-000000000000")))
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND


def _hours_ahead(hours: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromSeconds(int(time.time() + hours * 3600))
    return stamp
