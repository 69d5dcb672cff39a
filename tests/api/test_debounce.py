"""CreateJob's DEBOUNCE de-duplication, with a worker: the creates of a tenant with one key make
one job that runs once, a window after the last of them, with the last one's definition; once it
has run, the key makes a new job. DEBOUNCE with a schedule is INVALID_ARGUMENT."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from jobs_common.settings import Settings
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import field_violations, http_job, seconds, wait_terminal
from tests.support.processes import worker_serving
from tests.support.target import TargetServer

pytestmark = pytest.mark.usefixtures("api")

WINDOW_S = 2.0


@pytest.fixture
async def queue(settings: Settings, tmp_path: Path) -> AsyncIterator[str]:
    queue = f"debounce-{uuid.uuid4().hex[:8]}"
    async with worker_serving(settings, queue, tmp_path):
        yield queue


def _debounced(url: str, queue: str, key: str, **fields: object) -> api.CreateJobRequest:
    return api.CreateJobRequest(
        job=http_job(url, queue=queue, **fields),
        deduplication=api.Deduplication(
            key=f"debounce-{key}", window=seconds(WINDOW_S), mode=api.DEDUPLICATION_MODE_DEBOUNCE
        ),
    )


async def test_the_last_create_sets_the_definition_and_the_run_is_a_window_after_it(
    stub, target: TargetServer, queue: str, key: str
):
    flow = pb.FlowControl(key="tenant", max_concurrent=1)
    answers = []
    for i in range(5):
        answers.append(
            (await stub.CreateJob(_debounced(target.url(f"/ok/{key}-{i}"), queue, key, flow_control=flow))).job
        )
        last_create = time.time()
        await asyncio.sleep(0.3)
    assert len({job.id for job in answers}) == 1
    last = answers[-1]
    assert last.http_request.url == target.url(f"/ok/{key}-4")
    assert last.last_execution.state == pb.EXECUTION_STATE_SCHEDULED
    assert abs(last.schedule.run_at.ToDatetime().timestamp() - (last_create + WINDOW_S)) < 0.5

    done = await wait_terminal(stub, last.last_execution.id, timeout=30)
    assert done.state == pb.EXECUTION_STATE_SUCCEEDED
    for i in range(4):
        assert target.received(f"/ok/{key}-{i}") == []  # the earlier definitions never ran
    [call] = target.received(f"/ok/{key}-4")
    assert call.time >= last_create + WINDOW_S - 0.05

    # The run is over: the key makes a new job.
    again = (await stub.CreateJob(_debounced(target.url(f"/ok/{key}-again"), queue, key))).job
    assert again.id != last.id


async def test_a_hundred_concurrent_creates_make_one_run(stub, target: TargetServer, queue: str, key: str):
    requests = [_debounced(target.url(f"/ok/{key}-{i}"), queue, key) for i in range(100)]
    answers = await asyncio.gather(*(stub.CreateJob(request) for request in requests))
    assert len({answer.job.id for answer in answers}) == 1
    job = answers[0].job
    done = await wait_terminal(stub, job.last_execution.id, timeout=30)
    assert done.state == pb.EXECUTION_STATE_SUCCEEDED
    final = (await stub.GetJob(api.GetJobRequest(id=job.id))).job
    called = [i for i in range(100) if target.received(f"/ok/{key}-{i}")]
    assert len(called) == 1  # one run, of the definition the job ended with
    assert final.http_request.url == target.url(f"/ok/{key}-{called[0]}")
    assert len(target.received(f"/ok/{key}-{called[0]}")) == 1


async def test_debounce_with_a_schedule_is_invalid(stub, target, key):
    scheduled = http_job(target.url("/ok/x"), schedule=pb.Schedule())
    scheduled.schedule.run_at.FromSeconds(int(time.time()) + 60)
    request = api.CreateJobRequest(
        job=scheduled,
        deduplication=api.Deduplication(key=key, window=seconds(5), mode=api.DEDUPLICATION_MODE_DEBOUNCE),
    )
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.CreateJob(request)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "leave job.schedule unset" in field_violations(bad.value)["deduplication.mode"]
