"""Job.flow_control: a key's limits are checked, kept and shown, kept by each execution; with a
worker, no more of a key's calls are open at once than its max_concurrent, and a key with a
backlog does not hold back another key's jobs."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from arq.constants import job_key_prefix
from google.protobuf.field_mask_pb2 import FieldMask

from jobs_common.arq_extension import arq_job_id
from jobs_common.arq_extension._keys import flow_prefix
from jobs_common.settings import Settings
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import queue_service_pb2 as qapi
from jobscheduler.v1 import queue_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import create, eventually, field_violations, http_job, wait_terminal
from tests.support.processes import worker_serving
from tests.support.target import TargetServer

pytestmark = pytest.mark.usefixtures("api")


@pytest.mark.parametrize(
    ("flow", "field", "message"),
    [
        (pb.FlowControl(key=""), "job.flow_control.key", "1 to 256 characters"),
        (pb.FlowControl(key="k" * 257), "job.flow_control.key", "1 to 256 characters"),
        (pb.FlowControl(key="a\0b"), "job.flow_control.key", "NUL"),
        (pb.FlowControl(key="k", max_concurrent=-1), "job.flow_control.max_concurrent", "between 0 (no limit)"),
        (pb.FlowControl(key="k", max_concurrent=100_001), "job.flow_control.max_concurrent", "100,000"),
        (
            pb.FlowControl(key="k", max_dispatches_per_second=float("nan")),
            "job.flow_control.max_dispatches_per_second",
            "between 0 (no limit) and 10,000",
        ),
        (
            pb.FlowControl(key="k", max_dispatches_per_second=10_001),
            "job.flow_control.max_dispatches_per_second",
            "10,000",
        ),
    ],
)
async def test_a_bad_flow_control_is_invalid(stub, target, flow, field, message):
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await create(stub, http_job(target.url("/ok/flow"), queue="flow-bad", flow_control=flow))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in field_violations(bad.value)[field]


async def test_flow_control_is_kept_and_shown_and_not_updated(stub, target, key):
    flow = pb.FlowControl(key=f"tenant-{key}", max_concurrent=3, max_dispatches_per_second=2.5)
    later = http_job(target.url(f"/ok/{key}"), queue=f"flow-{key}", flow_control=flow, schedule=pb.Schedule())
    later.schedule.run_at.FromSeconds(int(time.time()) + 3600)
    job = await create(stub, later)
    assert job.flow_control == flow
    assert (await stub.GetJob(api.GetJobRequest(id=job.id))).job.flow_control == flow
    # Other changes keep it.
    update = pb.Job(id=job.id, priority=2)
    updated = (await stub.UpdateJob(api.UpdateJobRequest(job=update, update_mask=FieldMask(paths=["priority"])))).job
    assert updated.flow_control == flow
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.UpdateJob(api.UpdateJobRequest(job=update, update_mask=FieldMask(paths=["flow_control"])))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
async def flow_worker(settings: Settings, tmp_path: Path) -> AsyncIterator[str]:
    queue = f"flow-{uuid.uuid4().hex[:8]}"
    async with worker_serving(settings, queue, tmp_path):
        yield queue


async def test_a_keys_calls_stay_under_its_limit_and_another_key_is_not_held_back(
    stub, target: TargetServer, flow_worker: str, key: str
):
    queue, call_s = flow_worker, 0.4
    crowd_path, few_path = f"/sleep/{call_s}/{key}-crowd", f"/ok/{key}-few"
    crowd_flow = pb.FlowControl(key="crowd", max_concurrent=2)
    crowd = await asyncio.gather(
        *(create(stub, http_job(target.url(crowd_path), queue=queue, flow_control=crowd_flow)) for _ in range(12))
    )
    few = await asyncio.gather(
        *(
            create(stub, http_job(target.url(few_path), queue=queue, flow_control=pb.FlowControl(key="few")))
            for _ in range(3)
        )
    )
    for job in few:
        assert (await wait_terminal(stub, job.last_execution.id, timeout=30)).state == pb.EXECUTION_STATE_SUCCEEDED
    few_done = time.time()
    for job in crowd:
        assert (await wait_terminal(stub, job.last_execution.id, timeout=60)).state == pb.EXECUTION_STATE_SUCCEEDED
    arrivals = sorted(r.time for r in target.received(crowd_path))
    assert len(arrivals) == len(crowd)
    # Each call lasts call_s: three arrivals within less than that would be three calls open.
    for first, third in zip(arrivals, arrivals[2:], strict=False):
        assert third - first >= call_s * 0.95, arrivals
    # The few key's jobs did not wait for the crowd's backlog (6 rounds of call_s at 2 at once).
    assert few_done < arrivals[-1]


async def test_queue_stats_show_the_busiest_flow_keys(channel, stub, target, key):
    queue = f"flow-{key}"  # no worker serves it: the jobs stay ready
    for name, count in (("big", 3), ("small", 1)):
        flow = pb.FlowControl(key=f"{name}-{key}", max_concurrent=1)
        for _ in range(count):
            await create(stub, http_job(target.url(f"/ok/{key}"), queue=queue, flow_control=flow))
    stats = await queue_service_pb2_grpc.QueueServiceStub(channel).GetQueueStats(qapi.GetQueueStatsRequest(name=queue))
    assert stats.flow_keys == 2
    assert [(k.key, k.ready, k.open) for k in stats.busiest_flow_keys] == [
        (f"default/big-{key}", 3, 0),
        (f"default/small-{key}", 1, 0),
    ]  # the tenant's own keys
    assert stats.queued == 4


async def test_a_keys_jobs_and_limits_come_back_after_redis_lost_them(stub, target, arq_redis, key):
    queue = f"flow-{key}"  # no worker serves it
    flow = pb.FlowControl(key="tenant", max_concurrent=4, max_dispatches_per_second=1.5)
    jobs = [await create(stub, http_job(target.url(f"/ok/{key}"), queue=queue, flow_control=flow)) for _ in range(2)]
    prefix = flow_prefix(queue)
    # As a FLUSHALL would, for this queue alone: the key's state and the jobs arq held.
    await arq_redis.delete(*[k async for k in arq_redis.scan_iter(match=prefix + "*")])
    await arq_redis.delete(*(job_key_prefix + arq_job_id(job.last_execution.id) for job in jobs))

    async def restored() -> bool:
        ready = await arq_redis.zrange(prefix + "ready:default/tenant", 0, -1)
        return len(ready) == 2 and (await arq_redis.hget(prefix + "limits", "default/tenant") or b"").startswith(
            b"4 1.5 "
        )

    await eventually(restored, timeout=30)  # the session's api reconciles every second


async def test_a_keyed_jobs_retries_wait_in_its_key_and_finish(stub, target: TargetServer, flow_worker: str, key: str):
    flow = pb.FlowControl(key="flaky", max_concurrent=1)
    paths = [f"/flaky/{key}-{i}" for i in range(3)]
    jobs = [
        await create(stub, http_job(target.url(f"{path}?fail=1"), queue=flow_worker, flow_control=flow))
        for path in paths
    ]
    for job in jobs:
        done = await wait_terminal(stub, job.last_execution.id, timeout=30)
        assert (done.state, done.attempt_count) == (pb.EXECUTION_STATE_SUCCEEDED, 2)
    for path in paths:
        assert len(target.received(path)) == 2
