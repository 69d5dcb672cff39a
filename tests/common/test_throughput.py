"""Per-queue throughput in Redis: buckets summed over a minute and an hour, duration percentiles,
and counts kept in memory across a failed write."""

from __future__ import annotations

import uuid

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from jobs_common.throughput import Throughput, read_throughput
from tests.support.services import free_port


async def test_counts_and_durations_are_written_and_read_back(arq_redis):
    queue = f"rates-{uuid.uuid4().hex[:8]}"
    rates = Throughput(queue)
    for event, times in (("started", 3), ("succeeded", 2), ("failed", 1)):
        for _ in range(times):
            rates.count(event)  # type: ignore[arg-type]
    for seconds in (0.3, 0.1, 0.2):
        rates.duration(seconds)

    # Redis is away for the first write: nothing is lost, the next write takes it all.
    unreachable = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    with pytest.raises(RedisConnectionError):
        await rates.flush(unreachable)
    await unreachable.aclose()
    await rates.flush(arq_redis)
    await rates.flush(arq_redis)  # nothing new: writes nothing

    figures = await read_throughput(arq_redis, queue)
    assert (figures.started_last_minute, figures.succeeded_last_minute, figures.failed_last_minute) == (3, 2, 1)
    assert (figures.started_last_hour, figures.succeeded_last_hour, figures.failed_last_hour) == (3, 2, 1)
    assert (figures.duration_p50, figures.duration_p95, figures.duration_sample) == (0.2, 0.3, 3)

    empty = await read_throughput(arq_redis, f"{queue}-none")
    assert (empty.started_last_hour, empty.duration_p50, empty.duration_sample) == (0, None, 0)
