"""Priorities in the claim, against a real Redis: due jobs of a higher priority are claimed
first, in due-time order within one; a job not yet due is not claimed whatever its priority,
and the claim says when it will be; the scores keep their band through a retry's return."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

from jobs_common.arq_extension import Dispatch, Dispatcher, DueJobClaimer, arq_job_id
from jobs_common.arq_extension._keys import PRIORITY_BAND_MS, due_and_priority, priority_score

LEASE_MS = 4000


def test_a_score_says_its_due_time_and_priority():
    now = int(time.time() * 1000)
    for priority in range(10):
        assert due_and_priority(priority_score(now, priority)) == (now, priority)
    assert priority_score(now, 9) == now - 9 * PRIORITY_BAND_MS
    assert abs(priority_score(now, 9)) < 2**53  # exact in Redis's doubles


async def test_higher_priorities_first_and_fifo_within_one(arq_redis):
    queue = f"prio-{uuid.uuid4().hex[:8]}"
    dispatcher = Dispatcher(arq_redis)
    low = [f"{queue}-low-{i}" for i in range(3)]
    for execution_id in low:
        await dispatcher.dispatch([Dispatch(execution_id, queue)])
        await asyncio.sleep(0.002)  # distinct due times, in order
    later = datetime.now(UTC) + timedelta(seconds=60)
    await dispatcher.dispatch(
        [
            Dispatch(f"{queue}-top", queue, None, 9),
            Dispatch(f"{queue}-mid", queue, None, 3),
            Dispatch(f"{queue}-top-later", queue, later, 9),
        ]
    )
    claimer = DueJobClaimer(arq_redis, queue, f"w#{queue}")
    order = []
    for _ in range(6):
        claimed = await claimer.claim(int(time.time() * 1000), 100, 1, in_progress_ms=30_000, lease_ms=LEASE_MS)
        order += [job_id for job_id, _ in claimed.jobs]
    assert order == [arq_job_id(name) for name in (f"{queue}-top", f"{queue}-mid", *low)]
    # The priority-9 job due in a minute is left, and the claim says to look again by then.
    assert claimed.wait_ms is not None
    assert 55_000 < claimed.wait_ms <= 60_000
    [(job_id, score)] = await arq_redis.zrange(f"jobs:queue:{queue}", 0, -1, withscores=True)
    assert job_id.decode() == arq_job_id(f"{queue}-top-later")
    assert due_and_priority(int(score))[1] == 9
