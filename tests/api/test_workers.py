"""QueueService.ListWorkers and GetScalingRecommendation against real worker processes."""

from __future__ import annotations

import signal
import time
import uuid
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from jobscheduler.v1 import queue_service_pb2 as qapi
from jobscheduler.v1 import queue_service_pb2_grpc
from tests.support.apis import private_api
from tests.support.jobs import create, eventually, http_job, wait_terminal
from tests.support.processes import ChildProcess, settings_env

pytestmark = pytest.mark.usefixtures("api")


def _workers(settings, tmp_path: Path, queue: str, count: int) -> list[ChildProcess]:
    env = settings_env(settings.model_copy(update={"worker_queue": queue, "worker_max_concurrent_jobs": 7}))
    return [
        ChildProcess("jobs_worker", {**env, "WORKER_HEALTH_FILE": str(tmp_path / f"w{i}")}, tmp_path / f"w{i}.log")
        for i in range(count)
    ]


async def test_live_workers_are_listed_and_the_dead_drop_out(settings, channel, stub, target, tmp_path: Path):
    queues = queue_service_pb2_grpc.QueueServiceStub(channel)
    queue = f"workers-{uuid.uuid4().hex[:8]}"
    workers = _workers(settings, tmp_path, queue, 2)

    async def listed() -> dict[int, qapi.Worker]:
        response = await queues.ListWorkers(qapi.ListWorkersRequest(queue=queue))
        return {w.pid: w for w in response.workers}

    try:
        for w in workers:
            await w.wait_for_log("ready on queue")
        await eventually(lambda: _has(listed, {w.pid for w in workers}), timeout=5)
        now = await listed()
        first = now[workers[0].pid]
        assert (first.queue, first.capacity, first.version) == (queue, 7, "0.1.0")
        assert first.id == f"{first.host}:{first.pid}"
        assert abs(first.last_heartbeat_time.ToDatetime().timestamp() - time.time()) < 3

        await create(stub, http_job(target.url(f"/sleep/3/{queue}"), queue=queue))
        await eventually(lambda: _busy(listed), timeout=5)

        assert await workers[0].stop() == 0  # a clean stop leaves at once
        assert workers[0].pid not in await listed()
        workers[1].process.send_signal(signal.SIGKILL)
        await workers[1].wait()
        killed_at = time.monotonic()
        await eventually(lambda: _has(listed, set()), timeout=10)
        # Gone within WORKER_LEASE_TTL (3 s in tests) of its last heartbeat.
        assert time.monotonic() - killed_at < 3 + 1
    finally:
        for w in workers:
            await w.stop()


async def _has(listed, pids: set[int]) -> bool:
    return set(await listed()) == pids


async def _busy(listed) -> bool:
    return sum(w.in_flight for w in (await listed()).values()) == 1


async def test_the_recommendation_shows_its_inputs(settings, target):
    queue = f"scaling-{uuid.uuid4().hex[:8]}"
    scaled = settings.model_copy(
        update={
            "worker_max_concurrent_jobs": 4,
            "scaling_target_utilization": 0.5,
            "scaling_min_workers": 0,
            "scaling_max_workers": 3,
            "scaling_scale_down_cooldown": timedelta(seconds=60),
        }
    )
    async with private_api(scaled) as (stub, channel):
        queues = queue_service_pb2_grpc.QueueServiceStub(channel)
        idle = await queues.GetScalingRecommendation(qapi.GetScalingRecommendationRequest(queue=queue))
        assert (idle.desired_workers, idle.current_workers, idle.backlog) == (0, 0, 0)
        for _ in range(5):
            await create(stub, http_job(target.url(f"/ok/{queue}"), queue=queue))
        busy = await queues.GetScalingRecommendation(qapi.GetScalingRecommendationRequest(queue=queue))
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await queues.GetScalingRecommendation(qapi.GetScalingRecommendationRequest(queue=""))
    # 5 / (4 * 0.5) = 2.5 → 3 workers; no worker serves the queue, so capacity is the setting's.
    assert (busy.backlog, busy.in_flight, busy.current_workers) == (5, 0, 0)
    assert (busy.per_worker_capacity, busy.target_utilization, busy.min_workers, busy.max_workers) == (4, 0.5, 0, 3)
    assert busy.desired_workers == 3
    assert busy.scale_down_cooldown.ToTimedelta() == timedelta(seconds=60)
    assert busy.idle_for.ToTimedelta() == timedelta(0)
    assert "scale up from 0" in busy.reason
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_recommendation_follows_processing_time_measured_by_the_workers(
    settings, channel, stub, target, tmp_path: Path
):
    queues = queue_service_pb2_grpc.QueueServiceStub(channel)
    queue = f"processing-{uuid.uuid4().hex[:8]}"
    [worker] = _workers(settings, tmp_path, queue, 1)
    try:
        await worker.wait_for_log("ready on queue")
        jobs = [await create(stub, http_job(target.url(f"/sleep/1/{queue}-{i}"), queue=queue)) for i in range(6)]
        for job in jobs:
            await wait_terminal(stub, job.last_execution.id, timeout=20)

        answer = qapi.GetScalingRecommendationResponse()

        async def measured() -> bool:
            answer.CopyFrom(await queues.GetScalingRecommendation(qapi.GetScalingRecommendationRequest(queue=queue)))
            # The worker's heartbeat writes what it measured (every WORKER_HEARTBEAT_INTERVAL).
            return answer.HasField("mean_attempt_duration") and answer.arrival_rate * 60 >= 6

        await eventually(measured, timeout=10)
    finally:
        await worker.stop()
    # Six attempts of about one second in the last minute: 0.1/s * ~1 s = ~0.1 calls in flight.
    assert answer.arrival_rate == pytest.approx(6 / 60)
    mean = answer.mean_attempt_duration.ToTimedelta().total_seconds()
    assert 1.0 <= mean < 2.0
    assert answer.processing_demand == pytest.approx(answer.arrival_rate * mean, rel=1e-3)
    assert answer.max_ready_age.ToTimedelta() == settings.scaling_max_ready_age
    assert answer.oldest_ready_age.ToTimedelta() == timedelta(0)
    assert f"processing 0.1/s * {mean:.3g}s" in answer.reason
