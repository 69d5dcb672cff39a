"""An idle worker waits on its bells instead of polling every poll_delay: it makes a claim or so a
second while nothing is due, and a ring (an enqueue, an abort of what it holds) or the next job
falling due wakes it. Counted in claims, not timed: the tests that need a ring give the worker an
idle wait of a minute, so only the ring can wake it within the test's time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from arq import Retry
from arq.connections import ArqRedis
from arq.worker import func

from jobs_common.arq_extension import RUN_EXECUTION, ClaimingWorker, Dispatch, Dispatcher, redis_settings
from jobs_common.arq_extension._keys import MAX_IDLE_WAIT_MS
from jobs_common.settings import Settings
from tests.support.jobs import eventually

POLL_DELAY = 0.01  # without the bells, 100 claims a second
ONLY_A_RING = 60_000  # ms: an idle wait no test outlasts


class CountingWorker(ClaimingWorker):
    """Counts its claims; its one function records the claim count each run started at."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.claims = 0
        self.started_at_claim: dict[str, list[int]] = {}

    async def _start_claimed_jobs(self, read_limit: int) -> None:
        self.claims += 1
        await super()._start_claimed_jobs(read_limit)


@pytest.fixture
async def worker(arq_redis: ArqRedis, settings: Settings) -> AsyncIterator[CountingWorker]:
    async def run_execution(ctx: dict[str, object], execution_id: str) -> None:
        runs = counting.started_at_claim.setdefault(execution_id, [])
        runs.append(counting.claims)
        if execution_id.startswith("retry") and len(runs) == 1:
            raise Retry(defer=0.05)
        if execution_id.startswith("long"):
            await asyncio.sleep(60)

    counting = CountingWorker(
        functions=[func(run_execution, name=RUN_EXECUTION)],
        queue=f"bells-{uuid.uuid4().hex[:8]}",
        lease_ttl_ms=4000,
        handle_signals=False,
        redis_settings=redis_settings(settings),
        poll_delay=POLL_DELAY,
        allow_abort_jobs=True,
    )
    running = asyncio.create_task(counting.main())
    await eventually(lambda: counting.claims > 0)
    yield counting
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await counting.close()


async def test_an_idle_worker_claims_about_once_a_second_not_every_poll_delay(worker: CountingWorker):
    before = worker.claims
    await asyncio.sleep(2)
    # 200 at one claim per poll_delay; a wait of MAX_IDLE_WAIT_MS between claims makes ~2.
    assert worker.claims - before <= 2 * 1000 / MAX_IDLE_WAIT_MS + 2


async def test_an_enqueue_wakes_a_waiting_worker_at_once(worker: CountingWorker, arq_redis: ArqRedis):
    worker.max_idle_wait_ms = ONLY_A_RING
    await asyncio.sleep(MAX_IDLE_WAIT_MS / 1000 + 0.2)  # waiting a minute on its bells by now
    before = worker.claims
    await Dispatcher(arq_redis).dispatch([Dispatch("now", worker._queue)])
    await eventually(lambda: "now" in worker.started_at_claim)
    # The ring's claim took it: one claim, or two if a claim was already on its way.
    assert worker.started_at_claim["now"][0] - before <= 2


async def test_a_retry_wakes_its_worker_when_it_falls_due(worker: CountingWorker, arq_redis: ArqRedis):
    worker.max_idle_wait_ms = ONLY_A_RING
    await Dispatcher(arq_redis).dispatch([Dispatch("retry", worker._queue)])
    await eventually(lambda: len(worker.started_at_claim.get("retry", [])) == 2)
    first, second = worker.started_at_claim["retry"]
    # Due 50 ms after the first run: its ring, or the claim's wait until it is due.
    assert second - first <= 3


async def test_an_abort_wakes_the_worker_that_holds_the_call(worker: CountingWorker, arq_redis: ArqRedis):
    worker.max_idle_wait_ms = ONLY_A_RING
    dispatcher = Dispatcher(arq_redis)
    await dispatcher.dispatch([Dispatch("long", worker._queue)])
    await eventually(lambda: "exec:long" in worker.job_tasks)
    await asyncio.sleep(MAX_IDLE_WAIT_MS / 1000 + 0.2)  # waiting a minute on its bells by now
    before = worker.claims
    call = worker.job_tasks["exec:long"]
    await dispatcher.abort("long")
    await eventually(call.done)
    assert call.cancelled()
    assert worker.claims - before <= 2


async def test_a_job_due_later_wakes_its_worker_when_it_falls_due(worker: CountingWorker, arq_redis: ArqRedis):
    worker.max_idle_wait_ms = ONLY_A_RING
    await asyncio.sleep(MAX_IDLE_WAIT_MS / 1000 + 0.2)  # waiting a minute on its bells by now
    soon = datetime.now(UTC) + timedelta(milliseconds=300)
    # Its ring wakes the worker before it is due; the claim then says to wait until it is.
    await Dispatcher(arq_redis).dispatch([Dispatch("due-later", worker._queue, soon)])
    await eventually(lambda: "due-later" in worker.started_at_claim)
