"""The claim under a queue's rate limits, against a real Redis: no more calls open than
max_concurrent_dispatches across the queue's live workers (a lapsed worker's stop counting and
come back), and no more started than the token bucket holds; a queue without limits is claimed
as before."""

from __future__ import annotations

import asyncio
import time
import uuid

from arq.connections import ArqRedis

from jobs_common.arq_extension import Dispatcher, DueJobClaimer
from jobs_common.arq_extension._keys import held_key, limits_key, tokens_key, worker_leases_key
from jobs_common.domain import RateLimits

LEASE_MS = 4000


async def _queue_with_jobs(redis: ArqRedis, count: int) -> tuple[str, int]:
    queue = f"limits-{uuid.uuid4().hex[:8]}"  # its workers are named after it, its job ids too
    now = int(time.time() * 1000)
    await redis.zadd(f"jobs:queue:{queue}", {f"{queue}-{i:03}": now - 1000 + i for i in range(count)})
    return queue, now


async def _claim(claimer: DueJobClaimer, now: int, wanted: int = 100) -> list[str]:
    claimed = await claimer.claim(now, 100, wanted, in_progress_ms=30_000, lease_ms=LEASE_MS)
    return [job_id for job_id, _ in claimed.jobs]


async def test_no_more_calls_open_than_the_limit_across_workers(arq_redis):
    queue, now = await _queue_with_jobs(arq_redis, 10)
    await Dispatcher(arq_redis).sync_limits({queue: RateLimits(max_concurrent_dispatches=3)})
    first, second = DueJobClaimer(arq_redis, queue, f"w1#{queue}"), DueJobClaimer(arq_redis, queue, f"w2#{queue}")

    claimed = await first.claim(now, 100, 100, in_progress_ms=30_000, lease_ms=LEASE_MS)
    assert len(claimed.jobs) == 3
    assert claimed.concurrency_limited
    assert await _claim(second, now) == []
    # One of the first worker's calls ends (its finish leaves the held hash): one slot.
    await arq_redis.hdel(held_key(f"w1#{queue}"), claimed.jobs[0][0])
    assert len(await _claim(second, now)) == 1
    assert await _claim(second, now) == []


async def test_a_lapsed_workers_calls_stop_counting_and_come_back(arq_redis):
    queue, now = await _queue_with_jobs(arq_redis, 10)
    await Dispatcher(arq_redis).sync_limits({queue: RateLimits(max_concurrent_dispatches=3)})
    first, second = DueJobClaimer(arq_redis, queue, f"w1#{queue}"), DueJobClaimer(arq_redis, queue, f"w2#{queue}")
    taken = await _claim(first, now)
    assert len(taken) == 3
    assert await _claim(second, now) == []

    await arq_redis.zadd(worker_leases_key(queue), {f"w1#{queue}": 0})  # its lease lapsed (SIGKILL)
    again = await _claim(second, now)
    # Its three calls are back in the queue, and count no more: the second worker takes three,
    # the first of them the lapsed worker's (they are due first).
    assert again == taken
    assert await arq_redis.hlen(held_key(f"w2#{queue}")) == 3
    assert await _claim(second, now) == []


async def test_no_more_calls_started_than_the_bucket_holds(arq_redis):
    queue, now = await _queue_with_jobs(arq_redis, 20)
    await Dispatcher(arq_redis).sync_limits({queue: RateLimits(max_dispatches_per_second=5, max_burst_size=2)})
    claimer = DueJobClaimer(arq_redis, queue, f"w1#{queue}")

    assert len(await _claim(claimer, now)) == 2  # a new bucket starts full: the burst
    empty = await claimer.claim(now, 100, 100, in_progress_ms=30_000, lease_ms=LEASE_MS)
    assert empty.jobs == []
    assert empty.wait_ms is not None
    assert 0 < empty.wait_ms <= 200  # the next token, at 5 a second
    assert not empty.concurrency_limited
    await asyncio.sleep(0.45)  # 2.25 tokens' worth, or more on a slow machine: the bucket holds 2
    assert len(await _claim(claimer, now)) == 2
    assert await arq_redis.pttl(tokens_key(queue)) > 0  # an unused bucket goes by itself


async def test_a_queue_without_limits_is_claimed_as_before(arq_redis):
    queue, now = await _queue_with_jobs(arq_redis, 10)
    dispatcher = Dispatcher(arq_redis)
    await dispatcher.sync_limits({queue: RateLimits(max_concurrent_dispatches=2)})
    await dispatcher.sync_limits({queue: RateLimits()})  # limits taken off: no key left
    assert not await arq_redis.exists(limits_key(queue))
    claimed = await DueJobClaimer(arq_redis, queue, f"w1#{queue}").claim(now, 100, 100, 30_000, LEASE_MS)
    assert len(claimed.jobs) == 10
    assert not claimed.concurrency_limited
    assert not await arq_redis.exists(tokens_key(queue))
