"""Jobs that end together have their ends written in shared transactions: each keeps its result
and leaves the worker's held hash and arq's keys as alone, and a job to run again goes back to
the queue, while fewer transactions than jobs are sent."""

from __future__ import annotations

import asyncio
import uuid

from arq import Retry
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.jobs import Job, JobStatus
from arq.worker import func

from jobs_common.arq_extension import ClaimingWorker, arq_queue_name, redis_settings
from jobs_common.arq_extension._keys import held_key
from jobs_common.settings import Settings
from tests.support.jobs import eventually

JOBS = 60
release = asyncio.Event()


async def _ends_together(ctx: dict[str, int], number: int) -> int:
    await release.wait()
    if number % 3 == 0 and ctx["job_try"] == 1:
        raise Retry(defer=0)  # one in three runs again
    return number * 10


async def test_jobs_ending_together_share_transactions_and_each_ends_as_alone(arq_redis: ArqRedis, settings: Settings):
    queue = f"finishes-{uuid.uuid4().hex[:8]}"
    worker = ClaimingWorker(
        functions=[func(_ends_together, name="ends_together")],
        queue=queue,
        lease_ttl_ms=4000,
        handle_signals=False,
        redis_settings=redis_settings(settings),
        poll_delay=0.01,
        max_jobs=JOBS,
        max_tries=3,
    )
    release.clear()
    ids = [f"end-{queue}-{number}" for number in range(JOBS)]
    for number, job_id in enumerate(ids):
        await arq_redis.enqueue_job("ends_together", number, _job_id=job_id, _queue_name=arq_queue_name(queue))
    jobs = [Job(job_id, arq_redis, _queue_name=arq_queue_name(queue)) for job_id in ids]
    running = asyncio.create_task(worker.main())

    async def all_started() -> bool:
        return len(worker.job_tasks) == JOBS

    async def all_complete() -> bool:
        if running.done():
            running.result()
        return all([await job.status() == JobStatus.complete for job in jobs])

    try:
        await eventually(all_started, timeout=10)
        release.set()  # all 60 end at once
        await eventually(all_complete, timeout=10)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await worker.close()

    for number, job in enumerate(jobs):
        result = await job.result_info()
        assert result is not None
        assert (result.result, result.job_try) == (number * 10, 2 if number % 3 == 0 else 1)
        job_id = ids[number]
        for prefix in (job_key_prefix, retry_key_prefix, in_progress_key_prefix):
            assert not await arq_redis.exists(prefix + job_id), (prefix, job_id)
    assert not await arq_redis.exists(held_key(worker.holder))  # an empty hash is no key
    assert await arq_redis.zcard(arq_queue_name(queue)) == 0
    assert worker._finishes.items == JOBS + JOBS // 3  # every end, the retries' first ones too
    assert worker._finishes.batches < worker._finishes.items
