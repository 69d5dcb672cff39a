"""A job arq retries at once goes back to the queue before its finished run is collected, so the
same worker's next poll can claim it again, under the same job id, before it collects the run
that ended: the worker must tell the two runs apart and carry on (it used to crash the process)."""

from __future__ import annotations

import asyncio
import uuid

from arq import Retry
from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus
from arq.typing import WorkerCoroutine
from arq.worker import func

from jobs_common.arq_extension import ClaimingWorker, arq_queue_name, redis_settings
from jobs_common.settings import Settings
from tests.support.jobs import eventually

TRIES = 4


async def _retry_at_once(ctx: dict[str, int]) -> int:
    if ctx["job_try"] < TRIES:
        raise Retry(defer=0)  # due again as soon as it is back in the queue
    return ctx["job_try"]


async def _run_to_completion(
    arq_redis: ArqRedis, settings: Settings, function: WorkerCoroutine, *args: str
) -> tuple[ClaimingWorker, Job]:
    """Runs one job of ``function(*args)`` (up to TRIES + 1 tries) in a ClaimingWorker of its
    own queue until arq has its result; returns the stopped worker and the job."""
    queue = f"retries-{uuid.uuid4().hex[:8]}"
    worker = ClaimingWorker(
        functions=[func(function, name="under_test")],
        queue=queue,
        lease_ttl_ms=4000,
        handle_signals=False,
        redis_settings=redis_settings(settings),
        poll_delay=0.01,
        max_tries=TRIES + 1,
    )
    await arq_redis.enqueue_job("under_test", *args, _job_id=queue, _queue_name=arq_queue_name(queue))
    job = Job(queue, arq_redis, _queue_name=arq_queue_name(queue))
    running = asyncio.create_task(worker.main())

    async def finished() -> bool:
        if running.done():  # the poll loop never ends by itself: it raised
            running.result()
        return await job.status() == JobStatus.complete

    try:
        await eventually(finished, timeout=10)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await worker.close()
    return worker, job


async def test_a_job_retried_at_once_is_claimed_again_by_the_same_worker(arq_redis: ArqRedis, settings: Settings):
    worker, job = await _run_to_completion(arq_redis, settings, _retry_at_once)
    result = await job.result_info()
    assert result is not None
    assert result.result == TRIES
    assert worker.tasks == {}


async def test_each_run_counts_one_try_and_reads_its_job_from_the_claim(arq_redis: ArqRedis, settings: Settings):
    """The claim takes the start arq's run_job would make of each job (its payload, INCR of its
    retry key, its abort): each run sees the try after the last one's, not two more."""
    seen: list[tuple[int, str]] = []

    async def count_tries(ctx: dict[str, int], label: str) -> None:
        seen.append((ctx["job_try"], label))
        if ctx["job_try"] < TRIES:
            raise Retry(defer=0)

    await _run_to_completion(arq_redis, settings, count_tries, "its argument")
    assert seen == [(job_try, "its argument") for job_try in range(1, TRIES + 1)]
