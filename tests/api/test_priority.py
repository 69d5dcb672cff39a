"""Job priorities: 0-9 on CreateJob and UpdateJob, kept by each execution as its job had it; a
worker starts due executions of a higher priority first (a priority-9 job created behind a
backlog of priority-0 jobs on a queue of one call at a time is the next to start)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from jobs_common.settings import Settings
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import queue_service_pb2 as qapi
from jobscheduler.v1 import queue_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import create, field_violations, http_job, wait_terminal
from tests.support.processes import worker_serving
from tests.support.target import TargetServer

pytestmark = pytest.mark.usefixtures("api")


@pytest.mark.parametrize("priority", [-1, 10])
async def test_a_priority_out_of_range_is_invalid(stub, target, priority):
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await create(stub, http_job(target.url("/ok/prio"), queue="prio-bad", priority=priority))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "between 0 (the default) and 9" in field_violations(bad.value)["job.priority"]


async def test_priority_is_kept_shown_and_updated(stub, target, key):
    later = http_job(target.url(f"/ok/{key}"), queue=f"prio-{key}", priority=7, schedule=pb.Schedule())
    later.schedule.run_at.FromSeconds(int(time.time()) + 3600)
    job = await create(stub, later)
    assert job.priority == 7
    assert (await stub.GetJob(api.GetJobRequest(id=job.id))).job.priority == 7
    update = pb.Job(id=job.id, priority=2)
    updated = (await stub.UpdateJob(api.UpdateJobRequest(job=update, update_mask=FieldMask(paths=["priority"])))).job
    assert updated.priority == 2
    # Named in the mask and left unset: back to 0, the default.
    reset = await stub.UpdateJob(api.UpdateJobRequest(job=pb.Job(id=job.id), update_mask=FieldMask(paths=["priority"])))
    assert reset.job.priority == 0


@pytest.fixture
async def one_call_at_a_time(settings: Settings, channel, tmp_path: Path) -> AsyncIterator[str]:
    queue = f"prio-{uuid.uuid4().hex[:8]}"
    limits = qapi.RateLimits(max_concurrent_dispatches=1)
    await queue_service_pb2_grpc.QueueServiceStub(channel).UpdateQueue(
        qapi.UpdateQueueRequest(queue=qapi.Queue(name=queue, rate_limits=limits))
    )
    async with worker_serving(settings, queue, tmp_path):
        yield queue


async def test_a_high_priority_job_starts_next_behind_a_backlog(
    stub, target: TargetServer, one_call_at_a_time: str, key: str
):
    queue = one_call_at_a_time
    backlog_path, urgent_path = f"/sleep/0.2/{key}-backlog", f"/ok/{key}-urgent"
    backlog = await asyncio.gather(*(create(stub, http_job(target.url(backlog_path), queue=queue)) for _ in range(20)))
    urgent = await create(stub, http_job(target.url(urgent_path), queue=queue, priority=9))
    created_at = time.time()
    done = await wait_terminal(stub, urgent.last_execution.id, timeout=30)
    assert done.state == pb.EXECUTION_STATE_SUCCEEDED
    [arrived] = [received.time for received in target.received(urgent_path)]
    # Of the backlog, only a call already claimed when the urgent job came may start before it.
    overtaking = [r.time for r in target.received(backlog_path) if created_at < r.time < arrived]
    assert len(overtaking) <= 1, overtaking
    assert len(target.received(backlog_path)) < len(backlog)  # the backlog was still there
    await asyncio.gather(*(wait_terminal(stub, job.last_execution.id, timeout=30) for job in backlog))
