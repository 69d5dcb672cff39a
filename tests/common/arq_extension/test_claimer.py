"""The worker's claim script against a real Redis: due, not running, at most what fits."""

from __future__ import annotations

import time
import uuid

from arq.constants import in_progress_key_prefix

from jobs_common.arq_extension import DueJobClaimer, paused_key


async def test_claims_due_jobs_that_are_not_in_progress(arq_redis):
    queue = f"claim-{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    await arq_redis.zadd(queue, {"old": now - 10, "running": now - 5, "recent": now - 1, "future": now + 60_000})
    await arq_redis.psetex(in_progress_key_prefix + "running", 60_000, b"1")

    claimed = await DueJobClaimer(arq_redis, queue, paused_key(queue)).claim(
        now, read_limit=100, wanted=10, in_progress_ms=30_000
    )

    assert claimed == [("old", now - 10), ("recent", now - 1)]
    for job_id in ("old", "recent"):
        assert 29_000 < await arq_redis.pttl(in_progress_key_prefix + job_id) <= 30_000
    assert await arq_redis.exists(in_progress_key_prefix + "future") == 0
    # Claimed jobs stay in the queue until they finish (arq's contract); a second poll skips them.
    assert await arq_redis.zcard(queue) == 4
    assert (
        await DueJobClaimer(arq_redis, queue, paused_key(queue)).claim(
            now, read_limit=100, wanted=10, in_progress_ms=30_000
        )
        == []
    )


async def test_takes_no_more_than_wanted_and_reads_no_further_than_the_window(arq_redis):
    queue = f"claim-{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    await arq_redis.zadd(queue, {f"job-{i}": now - 100 + i for i in range(5)})

    assert [
        j
        for j, _ in await DueJobClaimer(arq_redis, queue, paused_key(queue)).claim(
            now, 100, wanted=2, in_progress_ms=1000
        )
    ] == [
        "job-0",
        "job-1",
    ]
    assert [
        j
        for j, _ in await DueJobClaimer(arq_redis, queue, paused_key(queue)).claim(
            now, read_limit=3, wanted=10, in_progress_ms=1000
        )
    ] == ["job-2"]
    assert await DueJobClaimer(arq_redis, queue, paused_key(queue)).claim(now, 100, wanted=0, in_progress_ms=1000) == []


async def test_claims_nothing_while_the_queue_is_paused(arq_redis):
    queue = f"claim-paused-{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    await arq_redis.zadd(queue, {"due": now - 10})
    claimer = DueJobClaimer(arq_redis, queue, paused_key(queue))
    await arq_redis.set(paused_key(queue), b"1")
    assert await claimer.claim(now, read_limit=100, wanted=10, in_progress_ms=1000) == []
    assert not await arq_redis.exists(in_progress_key_prefix + "due")
    await arq_redis.delete(paused_key(queue))
    assert [j for j, _ in await claimer.claim(now, read_limit=100, wanted=10, in_progress_ms=1000)] == ["due"]
