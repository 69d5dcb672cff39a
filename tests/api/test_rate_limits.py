"""Queue rate limits (Cloud Tasks' RateLimits): UpdateQueue sets them, GetQueue reads them,
Redis mirrors them for the claim (and gets them back from the reconciler after a loss), and the
workers keep to them: never more calls open than max_concurrent_dispatches across two workers,
never more started than the token bucket allows."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from jobs_common.arq_extension._keys import limits_key
from jobs_common.settings import Settings
from jobscheduler.v1 import queue_service_pb2 as qapi
from jobscheduler.v1 import queue_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import create, eventually, field_violations, http_job, wait_terminal
from tests.support.processes import ChildProcess, settings_env
from tests.support.target import TargetServer

pytestmark = pytest.mark.usefixtures("api")


def _limits(queue: qapi.Queue) -> tuple[float, int, int]:
    limits = queue.rate_limits
    return limits.max_dispatches_per_second, limits.max_burst_size, limits.max_concurrent_dispatches


async def _update(channel: grpc.aio.Channel, queue: qapi.Queue, *paths: str) -> qapi.Queue:
    queues = queue_service_pb2_grpc.QueueServiceStub(channel)
    mask = FieldMask(paths=list(paths))
    return (await queues.UpdateQueue(qapi.UpdateQueueRequest(queue=queue, update_mask=mask))).queue


async def test_update_and_get_queue_rate_limits_mirrored_to_redis(channel, arq_redis):
    queues = queue_service_pb2_grpc.QueueServiceStub(channel)
    name = f"limits-{uuid.uuid4().hex[:8]}"
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await queues.GetQueue(qapi.GetQueueRequest(name=name))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    # An implied mask: the limits are set, so all three change; an unset burst is the rate rounded up.
    limits = qapi.RateLimits(max_dispatches_per_second=2.5, max_concurrent_dispatches=4)
    updated = await _update(channel, qapi.Queue(name=name, rate_limits=limits))
    assert _limits(updated) == (2.5, 3, 4)
    got = (await queues.GetQueue(qapi.GetQueueRequest(name=name))).queue
    assert _limits(got) == (2.5, 3, 4)
    assert got.history_retention.seconds > 0  # the other settings are answered as ever
    assert await arq_redis.hgetall(limits_key(name)) == {b"rate": b"2.5", b"burst": b"3", b"concurrent": b"4"}

    # One limit by its path: the others stay.
    one = qapi.Queue(name=name, rate_limits=qapi.RateLimits(max_burst_size=10))
    assert _limits(await _update(channel, one, "rate_limits.max_burst_size")) == (2.5, 10, 4)
    # Named but unset: no limit. A retention change leaves the limits alone.
    assert _limits(await _update(channel, qapi.Queue(name=name), "rate_limits.max_dispatches_per_second")) == (
        0.0,
        0,
        4,
    )
    assert await arq_redis.hgetall(limits_key(name)) == {b"rate": b"0.0", b"burst": b"0", b"concurrent": b"4"}
    assert _limits(await _update(channel, qapi.Queue(name=name), "history_retention")) == (0.0, 0, 4)
    assert _limits(await _update(channel, qapi.Queue(name=name), "rate_limits")) == (0.0, 0, 0)
    assert not await arq_redis.exists(limits_key(name))
    listed = {q.name: q for q in (await queues.ListQueues(qapi.ListQueuesRequest())).queues}
    assert _limits(listed[name]) == (0.0, 0, 0)


async def test_the_reconciler_mirrors_the_limits_again_after_redis_lost_them(channel, arq_redis):
    name = f"limits-{uuid.uuid4().hex[:8]}"
    await _update(channel, qapi.Queue(name=name, rate_limits=qapi.RateLimits(max_concurrent_dispatches=7)))
    await arq_redis.delete(limits_key(name))  # as a FLUSHALL would, for this queue alone

    async def mirrored() -> bool:
        return await arq_redis.hget(limits_key(name), "concurrent") == b"7"

    await eventually(mirrored, timeout=10)  # the session's api reconciles every second


@pytest.mark.parametrize(
    ("limits", "field", "message"),
    [
        (qapi.RateLimits(max_dispatches_per_second=-1), "max_dispatches_per_second", "between 0 (no limit) and 10,000"),
        (qapi.RateLimits(max_dispatches_per_second=math.nan), "max_dispatches_per_second", "between 0"),
        (qapi.RateLimits(max_dispatches_per_second=20_000), "max_dispatches_per_second", "10,000"),
        (qapi.RateLimits(max_burst_size=-1), "max_burst_size", "between 0 (the rate rounded up) and 100,000"),
        (qapi.RateLimits(max_concurrent_dispatches=-3), "max_concurrent_dispatches", "between 0 (no limit)"),
        (qapi.RateLimits(max_concurrent_dispatches=200_000), "max_concurrent_dispatches", "100,000"),
    ],
)
async def test_limits_out_of_range_are_invalid(channel, limits, field, message):
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await _update(channel, qapi.Queue(name="limits-bad", rate_limits=limits))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in field_violations(bad.value)[f"queue.rate_limits.{field}"]


@pytest.fixture
async def two_workers(settings: Settings, tmp_path: Path) -> AsyncIterator[str]:
    queue = f"limited-{uuid.uuid4().hex[:8]}"
    workers = [
        ChildProcess(
            "jobs_worker",
            settings_env(
                settings.model_copy(update={"worker_queue": queue}), WORKER_HEALTH_FILE=str(tmp_path / f"h{i}")
            ),
            tmp_path / f"worker-{i}.log",
        )
        for i in range(2)
    ]
    try:
        for worker in workers:
            await worker.wait_for_log("ready on queue")
        yield queue
    finally:
        for worker in workers:
            await worker.stop()


CALL_S = 0.6


async def test_two_workers_never_open_more_calls_than_the_queue_allows(
    channel, stub, target: TargetServer, two_workers: str, key: str
):
    queue = two_workers
    await _update(channel, qapi.Queue(name=queue, rate_limits=qapi.RateLimits(max_concurrent_dispatches=2)))
    path = f"/sleep/{CALL_S}/{key}"
    created = await asyncio.gather(*(create(stub, http_job(target.url(path), queue=queue)) for _ in range(8)))
    queues = queue_service_pb2_grpc.QueueServiceStub(channel)

    async def held_back() -> bool:
        stats = await queues.GetQueueStats(qapi.GetQueueStatsRequest(name=queue))
        assert stats.open_dispatches <= 2
        return stats.open_dispatches == 2 and stats.waiting_for_concurrency > 0 and stats.waiting_for_rate == 0

    await eventually(held_back, timeout=10)
    done = await asyncio.gather(*(wait_terminal(stub, job.last_execution.id, timeout=30) for job in created))
    assert {execution.state for execution in done} == {pb.EXECUTION_STATE_SUCCEEDED}
    starts = sorted(received.time for received in target.received(path))
    assert len(starts) == 8
    # Each call was open at least CALL_S from its arrival: calls that arrived within CALL_S of
    # each other were open together. Never three.
    assert max(sum(1 for other in starts if start <= other < start + CALL_S) for start in starts) == 2


async def test_calls_start_no_faster_than_the_bucket_refills(
    channel, stub, target: TargetServer, two_workers: str, key: str
):
    queue = two_workers
    rate, burst = 4.0, 2
    limits = qapi.RateLimits(max_dispatches_per_second=rate, max_burst_size=burst)
    await _update(channel, qapi.Queue(name=queue, rate_limits=limits))
    path = f"/ok/{key}"
    created = await asyncio.gather(*(create(stub, http_job(target.url(path), queue=queue)) for _ in range(10)))
    queues = queue_service_pb2_grpc.QueueServiceStub(channel)

    async def waiting_for_tokens() -> bool:
        stats = await queues.GetQueueStats(qapi.GetQueueStatsRequest(name=queue))
        return stats.waiting_for_rate > 0 and stats.waiting_for_concurrency == 0

    await eventually(waiting_for_tokens, timeout=10)
    done = await asyncio.gather(*(wait_terminal(stub, job.last_execution.id, timeout=30) for job in created))
    assert {execution.state for execution in done} == {pb.EXECUTION_STATE_SUCCEEDED}
    arrivals = sorted(received.time for received in target.received(path))
    # From any call on, the calls that followed within a span are at most the burst plus what
    # the rate refilled in it (and one for the clocks: the bucket keeps Redis's, the target its own).
    for i, first in enumerate(arrivals):
        for j in range(i, len(arrivals)):
            assert j - i + 1 <= burst + rate * (arrivals[j] - first) + 1, (i, j, arrivals)
