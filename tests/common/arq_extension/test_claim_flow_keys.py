"""The claim with flow keys (Job.flow_control), against a real Redis: the jobs of a key wait in
its own ready set, no more of a key's calls are open than its max_concurrent across workers (a
lapsed worker's come back and stop counting, an ended one frees its slot and wakes a waiting
worker), no more start than its bucket holds, and keys take turns: a key with many jobs waiting
does not hold back another key's."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix

from jobs_common.arq_extension import (
    Dispatch,
    Dispatcher,
    DueJobClaimer,
    Flow,
    FlowKeyState,
    LimitsState,
    arq_job_id,
    arq_queue_name,
)
from jobs_common.arq_extension._keys import (
    BELL_LENGTH,
    FLOW_BLOCKED,
    flow_prefix,
    held_key,
    queue_bell_key,
    worker_leases_key,
)
from jobs_common.arq_extension._scripts import FLOW_FINISH_SCRIPT, HAND_BACK_SCRIPT

LEASE_MS = 4000


def _queue() -> str:
    return f"flow-{uuid.uuid4().hex[:8]}"


async def _enqueue(redis: ArqRedis, queue: str, key: str | None, count: int, **limits: float) -> list[str]:
    """``count`` due jobs of ``key`` (None: without a key), in order; their arq job ids."""
    flow = Flow(key, since_ms=int(limits.pop("since_ms", 0)), **limits) if key is not None else None  # type: ignore[arg-type]
    ids = [f"{queue}-{key or 'none'}-{i:04}" for i in range(count)]
    await Dispatcher(redis).dispatch([Dispatch(execution_id, queue, None, 0, flow) for execution_id in ids])
    return [arq_job_id(execution_id) for execution_id in ids]


async def _claim(claimer: DueJobClaimer, wanted: int = 100) -> list[str]:
    claimed = await claimer.claim(int(time.time() * 1000) + 5, 100, wanted, in_progress_ms=30_000, lease_ms=LEASE_MS)
    return [job_id for job_id, _ in claimed.jobs]


async def _finish(redis: Any, queue: str, key: str, job_id: str, holder: str, again_at: str = "") -> None:
    """What the worker's transaction of job ends does for a keyed job (ClaimingWorker._write_finishes)."""
    await redis.eval(
        FLOW_FINISH_SCRIPT,
        0,
        flow_prefix(queue),
        key,
        job_id,
        holder,
        again_at,
        queue_bell_key(queue),
        str(BELL_LENGTH),
    )
    await redis.hdel(held_key(holder), job_id)
    await redis.delete(in_progress_key_prefix + job_id)


async def test_a_keyed_job_waits_in_its_keys_ready_set_and_is_claimed_with_its_key(arq_redis):
    queue = _queue()
    [job] = await _enqueue(arq_redis, queue, "tenant-a", 1, max_concurrent=2)
    prefix = flow_prefix(queue)
    assert await arq_redis.zcard(arq_queue_name(queue)) == 0
    assert await arq_redis.zrange(prefix + "ready:tenant-a", 0, -1) == [job.encode()]
    assert await arq_redis.hget(prefix + "limits", "tenant-a") == b"2 0.0 0"

    claimer = DueJobClaimer(arq_redis, queue, f"w#{queue}")
    claimed = await claimer.claim(int(time.time() * 1000) + 5, 100, 10, in_progress_ms=30_000, lease_ms=LEASE_MS)
    assert [job_id for job_id, _ in claimed.jobs] == [job]
    assert claimed.flow_keys == {job: "tenant-a"}
    assert claimed.concurrency_limited
    assert await arq_redis.hgetall(prefix + "open:tenant-a") == {job.encode(): f"w#{queue}".encode()}

    await _finish(arq_redis, queue, "tenant-a", job, f"w#{queue}")
    # The key's last job is done: nothing of it is left in Redis, only the queue's turn clock.
    assert await arq_redis.keys(prefix + "*") == [(prefix + "clock").encode()]
    assert 0 < await arq_redis.pttl(prefix + "clock") <= 3_600_000


async def test_a_key_with_thousands_waiting_takes_turns_with_a_key_with_a_few(arq_redis):
    queue = _queue()
    crowd = await _enqueue(arq_redis, queue, "A", 2000, max_concurrent=2)
    few = await _enqueue(arq_redis, queue, "B", 10, max_concurrent=2)
    first, second = DueJobClaimer(arq_redis, queue, f"w1#{queue}"), DueJobClaimer(arq_redis, queue, f"w2#{queue}")

    taken = await _claim(first)
    assert sorted(taken) == sorted(crowd[:2] + few[:2])  # both keys in the first claim, each up to its limit
    assert await _claim(second) == []  # both keys' calls are all open, across workers

    # B's calls end as they would, and B's next start at the next claim; A stays at 2 open.
    started = [j for j in taken if j in few]
    running = list(started)
    while len(started) < len(few):
        for job_id in running:
            await _finish(arq_redis, queue, "B", job_id, f"w1#{queue}")
        running = await _claim(first)
        assert 0 < len(running) <= 2
        assert set(running) <= set(few)
        started += running
    assert started == few  # in order
    assert await arq_redis.hlen(flow_prefix(queue) + "open:A") == 2


async def test_keys_without_limits_share_a_claim_evenly_and_rotate(arq_redis):
    queue = _queue()
    crowd = await _enqueue(arq_redis, queue, "A", 100)
    few = await _enqueue(arq_redis, queue, "B", 3)
    unkeyed = await _enqueue(arq_redis, queue, None, 3)
    claimer = DueJobClaimer(arq_redis, queue, f"w#{queue}")

    taken = await _claim(claimer, wanted=6)
    assert sorted(taken) == sorted(crowd[:2] + few[:2] + unkeyed[:2])  # round robin over three lanes
    # One at a time, the lanes served longest ago go first: none is served twice in a row.
    singles = [await _claim(claimer, wanted=1) for _ in range(3)]
    lanes = [("A" if j in crowd else "B" if j in few else "none") for [j] in singles]
    assert sorted(lanes) == ["A", "B", "none"]


async def test_priority_goes_before_turns(arq_redis):
    queue = _queue()
    await _enqueue(arq_redis, queue, "A", 5)
    urgent = "urgent"
    await Dispatcher(arq_redis).dispatch([Dispatch(urgent, queue, None, 9, Flow("B"))])
    claimer = DueJobClaimer(arq_redis, queue, f"w#{queue}")
    assert await _claim(claimer, wanted=1) == [arq_job_id(urgent)]


async def test_a_keys_rate_limits_its_starts_and_says_when_the_next_token_comes(arq_redis):
    queue = _queue()
    await _enqueue(arq_redis, queue, "A", 10, max_dispatches_per_second=2.0)
    claimer = DueJobClaimer(arq_redis, queue, f"w#{queue}")
    assert len(await _claim(claimer)) == 2  # a new bucket holds a second's tokens
    claimed = await claimer.claim(int(time.time() * 1000) + 5, 100, 100, in_progress_ms=30_000, lease_ms=LEASE_MS)
    assert claimed.jobs == []
    assert claimed.wait_ms is not None
    assert 0 < claimed.wait_ms <= 500
    # The key is not read again before its token: its score in the keys set is then.
    score = await arq_redis.zscore(flow_prefix(queue) + "keys", "A")
    assert score is not None
    assert time.time() * 1000 < score < FLOW_BLOCKED


async def test_a_lapsed_workers_keyed_calls_come_back_and_stop_counting(arq_redis):
    queue = _queue()
    jobs = await _enqueue(arq_redis, queue, "A", 5, max_concurrent=2)
    first, second = DueJobClaimer(arq_redis, queue, f"w1#{queue}"), DueJobClaimer(arq_redis, queue, f"w2#{queue}")
    taken = await _claim(first)
    assert taken == jobs[:2]
    assert await _claim(second) == []

    await arq_redis.zadd(worker_leases_key(queue), {f"w1#{queue}": 0})  # its lease lapsed (SIGKILL)
    assert await _claim(second) == jobs[:2]  # back in the key's ready set, due first
    open_calls = await arq_redis.hgetall(flow_prefix(queue) + "open:A")
    assert open_calls == {job.encode(): f"w2#{queue}".encode() for job in jobs[:2]}  # not counted twice

    # The lapsed worker, still alive after all, finishes one of them: the slot stays the second's.
    await _finish(arq_redis, queue, "A", jobs[0], f"w1#{queue}")
    assert await arq_redis.hlen(flow_prefix(queue) + "open:A") == 2


async def test_an_ended_call_wakes_a_worker_waiting_for_its_keys_slot(arq_redis):
    queue = _queue()
    jobs = await _enqueue(arq_redis, queue, "A", 3, max_concurrent=1)
    claimer = DueJobClaimer(arq_redis, queue, f"w#{queue}")
    assert await _claim(claimer) == jobs[:1]
    assert await _claim(claimer) == []  # the key waits for its slot: no longer read
    assert await arq_redis.zscore(flow_prefix(queue) + "keys", "A") == FLOW_BLOCKED
    await arq_redis.delete(queue_bell_key(queue))

    # A retry goes back to the key's ready set; the slot frees and the bell rings.
    again_at = str(int(time.time() * 1000) + 60_000)
    await _finish(arq_redis, queue, "A", jobs[0], f"w#{queue}", again_at)
    assert await arq_redis.llen(queue_bell_key(queue)) == 1
    assert await arq_redis.zscore(flow_prefix(queue) + "ready:A", jobs[0]) == float(again_at)
    assert await _claim(claimer) == jobs[1:2]


async def test_a_hand_back_returns_keyed_jobs_to_their_key_and_frees_their_slots(arq_redis):
    queue = _queue()
    jobs = await _enqueue(arq_redis, queue, "A", 2, max_concurrent=2)
    claimer = DueJobClaimer(arq_redis, queue, f"w#{queue}")
    assert await _claim(claimer) == jobs
    hand_back = arq_redis.register_script(HAND_BACK_SCRIPT)
    keys = [arq_queue_name(queue), held_key(f"w#{queue}"), worker_leases_key(queue), queue_bell_key(queue)]
    assert await hand_back(keys=keys, args=[in_progress_key_prefix, f"w#{queue}", BELL_LENGTH, flow_prefix(queue)]) == 2
    assert [j.decode() for j in await arq_redis.zrange(flow_prefix(queue) + "ready:A", 0, -1)] == jobs
    assert not await arq_redis.exists(flow_prefix(queue) + "open:A")
    assert await arq_redis.zcard(arq_queue_name(queue)) == 0
    assert await _claim(claimer) == jobs


async def test_the_latest_jobs_limits_win_whatever_the_order_of_their_dispatches(arq_redis):
    queue = _queue()
    await _enqueue(arq_redis, queue, "A", 1, max_concurrent=5, since_ms=2000)
    await _enqueue(arq_redis, queue, "A", 1, max_concurrent=1, since_ms=1000)  # an older job, dispatched later
    assert await arq_redis.hget(flow_prefix(queue) + "limits", "A") == b"5 0.0 2000"


async def test_a_redispatch_puts_a_lost_keyed_job_in_its_keys_ready_set(arq_redis):
    queue = _queue()
    dispatch = Dispatch(uuid.uuid4(), queue, datetime.now(UTC) - timedelta(seconds=1), 0, Flow("A", 3, 0.0, 10))
    assert await Dispatcher(arq_redis).redispatch([dispatch]) == [1]
    job = arq_job_id(dispatch.execution_id)
    assert await arq_redis.zrange(flow_prefix(queue) + "ready:A", 0, -1) == [job.encode()]
    assert await arq_redis.hget(flow_prefix(queue) + "limits", "A") == b"3 0.0 10"
    await arq_redis.delete(flow_prefix(queue) + "ready:A")  # the queue entry alone lost
    assert await Dispatcher(arq_redis).redispatch([dispatch]) == [2]
    assert await arq_redis.zrange(flow_prefix(queue) + "ready:A", 0, -1) == [job.encode()]
    claimer = DueJobClaimer(arq_redis, queue, f"w#{queue}")
    assert await _claim(claimer) == [job]


async def test_what_the_keys_hold_back_is_read_as_the_claim_reckons(arq_redis):
    queue = _queue()
    await _enqueue(arq_redis, queue, "A", 5, max_concurrent=1)
    await _enqueue(arq_redis, queue, "B", 3, max_dispatches_per_second=1.0)
    await _enqueue(arq_redis, queue, "C", 2)
    claimer = DueJobClaimer(arq_redis, queue, f"w#{queue}")
    assert len(await _claim(claimer)) == 1 + 1 + 2
    await arq_redis.zadd(arq_queue_name(queue), {"unkeyed": int(time.time() * 1000)})

    held = await LimitsState(arq_redis).read(queue)
    assert held.flow_keys == 2  # C has nothing ready left
    assert (held.waiting_for_key_concurrency, held.waiting_for_key_rate) == (4, 2)
    assert held.busiest_keys == (FlowKeyState("A", 4, 1), FlowKeyState("B", 2, 1))
    assert held.open_dispatches == 4
