"""The claim script against a real Redis: due ready jobs leave the queue for the claiming worker's
held hash; a worker whose lease lapsed has everything it held put back at once; aborts of held
jobs reach their holder's next claim."""

from __future__ import annotations

import time
import uuid

from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss, in_progress_key_prefix
from arq.jobs import Job, JobStatus

from jobs_common.arq_extension import Dispatcher, DueJobClaimer, paused_key
from jobs_common.arq_extension._claimer import Claimed, JobStart
from jobs_common.arq_extension._keys import (
    BELL_LENGTH,
    aborts_key,
    flow_prefix,
    held_key,
    queue_bell_key,
    worker_bell_key,
    worker_leases_key,
)
from jobs_common.arq_extension._scripts import HAND_BACK_SCRIPT
from jobs_common.arq_extension._worker import POLL_LAG_TARGET_S, claims_allowed

LEASE_MS = 4000


async def _lease_left_ms(redis: ArqRedis, queue: str, holder: str) -> float:
    """How long the holder's lease has left, on Redis's clock."""
    seconds, micros = await redis.time()
    return float(await redis.zscore(worker_leases_key(queue), holder)) - (seconds * 1000 + micros / 1000)


def _names() -> tuple[str, str]:
    queue = f"claim-{uuid.uuid4().hex[:8]}"
    return queue, f"jobs:queue:{queue}"


def _claimer(redis: ArqRedis, queue: str, holder: str) -> DueJobClaimer:
    return DueJobClaimer(redis, queue, holder)


async def _jobs(claimer: DueJobClaimer, *args: int, **kwargs: int) -> list[tuple[str, int]]:
    """The jobs one claim took."""
    return (await claimer.claim(*args, **kwargs)).jobs


async def test_claimed_jobs_leave_the_queue_for_the_workers_held_hash(arq_redis):
    queue, ready = _names()
    now = int(time.time() * 1000)
    await arq_redis.zadd(ready, {"old": now - 10, "recent": now - 1, "future": now + 60_000})

    claimed = await _jobs(_claimer(arq_redis, queue, "w1#a"), now, 100, 10, in_progress_ms=30_000, lease_ms=LEASE_MS)

    assert claimed == [("old", now - 10), ("recent", now - 1)]
    # Out of the ready set: the next poll never reads them again, however long they run.
    assert await arq_redis.zrange(ready, 0, -1) == [b"future"]
    assert await arq_redis.hgetall(held_key("w1#a")) == {
        b"old": str(now - 10).encode(),
        b"recent": str(now - 1).encode(),
    }
    for job_id in ("old", "recent"):
        assert await arq_redis.get(in_progress_key_prefix + job_id) == b"w1#a"
        assert 29_000 < await arq_redis.pttl(in_progress_key_prefix + job_id) <= 30_000
        # arq's own client still sees a claimed job (though Job.result() would not wait for it).
        assert await Job(job_id, arq_redis, _queue_name=ready).status() == JobStatus.in_progress
    assert LEASE_MS - 1000 < await _lease_left_ms(arq_redis, queue, "w1#a") <= LEASE_MS
    assert await _jobs(_claimer(arq_redis, queue, "w1#a"), now, 100, 10, 30_000, LEASE_MS) == []


async def test_a_job_another_version_still_runs_stays_in_the_queue(arq_redis):
    queue, ready = _names()
    now = int(time.time() * 1000)
    await arq_redis.zadd(ready, {"running": now - 5, "due": now - 1})
    await arq_redis.psetex(in_progress_key_prefix + "running", 60_000, b"1")
    assert await _jobs(_claimer(arq_redis, queue, "w1#a"), now, 100, 10, 30_000, LEASE_MS) == [("due", now - 1)]
    assert await arq_redis.zrange(ready, 0, -1) == [b"running"]


async def test_takes_no_more_than_wanted_and_reads_no_further_than_the_window(arq_redis):
    queue, ready = _names()
    now = int(time.time() * 1000)
    await arq_redis.zadd(ready, {f"job-{i}": now - 100 + i for i in range(5)})
    claimer = _claimer(arq_redis, queue, "w1#a")
    assert [j for j, _ in await _jobs(claimer, now, 100, wanted=2, in_progress_ms=1000, lease_ms=LEASE_MS)] == [
        "job-0",
        "job-1",
    ]
    await arq_redis.psetex(in_progress_key_prefix + "job-2", 60_000, b"1")
    # The window of 2 reads job-2 (skipped, in progress) and job-3.
    assert [
        j for j, _ in await _jobs(claimer, now, read_limit=2, wanted=10, in_progress_ms=1000, lease_ms=LEASE_MS)
    ] == ["job-3"]
    assert await _jobs(claimer, now, 100, wanted=0, in_progress_ms=1000, lease_ms=LEASE_MS) == []


async def test_claims_nothing_while_the_queue_is_paused_but_keeps_its_lease(arq_redis):
    queue, ready = _names()
    now = int(time.time() * 1000)
    await arq_redis.zadd(ready, {"due-while-paused": now - 10})
    claimer = _claimer(arq_redis, queue, "w1#a")
    await arq_redis.set(paused_key(queue), b"1")
    assert await _jobs(claimer, now, 100, 10, 1000, LEASE_MS) == []
    assert not await arq_redis.exists(in_progress_key_prefix + "due-while-paused")
    assert LEASE_MS - 1000 < await _lease_left_ms(arq_redis, queue, "w1#a") <= LEASE_MS
    await arq_redis.delete(paused_key(queue))
    assert [j for j, _ in await _jobs(claimer, now, 100, 10, 1000, LEASE_MS)] == ["due-while-paused"]


async def test_a_lapsed_workers_calls_all_go_back_to_the_queue_at_their_scores(arq_redis):
    queue, ready = _names()
    now = int(time.time() * 1000)
    await arq_redis.zadd(ready, {f"call-{i}": now - 1000 + i for i in range(50)})
    dead = _claimer(arq_redis, queue, "dead#1")
    assert len(await _jobs(dead, now, 100, 50, 60_000, LEASE_MS)) == 50
    assert await arq_redis.zcard(ready) == 0

    # The dead worker's lease lapses; the next claim of a live worker puts its calls back first.
    await arq_redis.zadd(worker_leases_key(queue), {"dead#1": now - 1})
    alive = _claimer(arq_redis, queue, "alive#2")
    taken = await _jobs(alive, now, 100, 10, 60_000, LEASE_MS)

    assert [job for job, _ in taken] == [f"call-{i}" for i in range(10)]  # oldest first, at their own scores
    assert [score for _, score in taken] == [now - 1000 + i for i in range(10)]
    assert await arq_redis.zcard(ready) == 40
    assert not await arq_redis.exists(held_key("dead#1"))
    assert await arq_redis.zscore(worker_leases_key(queue), "dead#1") is None
    assert await arq_redis.get(in_progress_key_prefix + "call-0") == b"alive#2"
    assert not await arq_redis.exists(in_progress_key_prefix + "call-49")


async def test_a_live_workers_calls_stay_held(arq_redis):
    queue, ready = _names()
    now = int(time.time() * 1000)
    await arq_redis.zadd(ready, {"call": now - 10})
    await _jobs(_claimer(arq_redis, queue, "busy#1"), now, 100, 10, 60_000, LEASE_MS)
    assert await _jobs(_claimer(arq_redis, queue, "other#2"), now, 100, 10, 60_000, LEASE_MS) == []
    assert await arq_redis.hkeys(held_key("busy#1")) == [b"call"]


async def test_hand_back_returns_named_or_all_held_jobs(arq_redis):
    queue, ready = _names()
    now = int(time.time() * 1000)
    await arq_redis.zadd(ready, {"a": now - 3, "b": now - 2, "c": now - 1})
    await _jobs(_claimer(arq_redis, queue, "w#1"), now, 100, 10, 60_000, LEASE_MS)
    hand_back = arq_redis.register_script(HAND_BACK_SCRIPT)
    keys = [ready, held_key("w#1"), worker_leases_key(queue), queue_bell_key(queue)]

    assert await hand_back(keys=keys, args=[in_progress_key_prefix, "w#1", BELL_LENGTH, flow_prefix(queue), "b"]) == 1
    assert await arq_redis.zrange(ready, 0, -1, withscores=True) == [(b"b", now - 2)]
    assert await arq_redis.llen(queue_bell_key(queue)) == 1  # a waiting worker wakes for it
    assert not await arq_redis.exists(in_progress_key_prefix + "b")
    assert await arq_redis.zscore(worker_leases_key(queue), "w#1") is not None

    assert (
        await hand_back(keys=keys, args=[in_progress_key_prefix, "w#1", BELL_LENGTH, flow_prefix(queue)]) == 2
    )  # all, and leave
    assert [job for job, _ in await arq_redis.zrange(ready, 0, -1, withscores=True)] == [b"a", b"b", b"c"]
    assert not await arq_redis.exists(held_key("w#1"))
    assert await arq_redis.zscore(worker_leases_key(queue), "w#1") is None


async def test_an_abort_reaches_only_the_holders_next_claim_once(arq_redis):
    queue, ready = _names()
    now = int(time.time() * 1000)
    await arq_redis.zadd(ready, {"exec:a": now - 2, "exec:b": now + 60_000})
    holder, other = _claimer(arq_redis, queue, "w1#a"), _claimer(arq_redis, queue, "w2#b")
    assert await _jobs(holder, now, 100, 10, 60_000, LEASE_MS) == [("exec:a", now - 2)]
    dispatcher = Dispatcher(arq_redis)

    await dispatcher.abort_many(["a", "b"])  # execution ids; arq's job ids are exec:<id>
    # arq's abort set has both (arq aborts an id found there before it starts); the holder's
    # abort set only the one it holds, read and emptied by its next claim.
    assert set(await arq_redis.zrange(abort_jobs_ss, 0, -1)) >= {b"exec:a", b"exec:b"}
    assert (await other.claim(now, 100, 10, 60_000, LEASE_MS)).aborts == []
    assert (await holder.claim(now, 100, 10, 60_000, LEASE_MS)).aborts == ["exec:a"]
    assert (await holder.claim(now, 100, 10, 60_000, LEASE_MS)).aborts == []
    # A paused queue claims nothing but still hands over aborts.
    await dispatcher.abort("a")
    await arq_redis.set(paused_key(queue), b"1")
    paused = await holder.claim(now, 100, 10, 60_000, LEASE_MS)
    assert (paused.jobs, paused.aborts) == ([], ["exec:a"])
    # Each abort rang the holder's own bell (a waiting holder wakes for it), not the other's.
    assert await arq_redis.llen(worker_bell_key("w1#a")) == 2
    assert not await arq_redis.exists(worker_bell_key("w2#b"))
    # Rings a busy holder did not take stay bounded, as the queue's do.
    await dispatcher.abort_many(["a"] * (BELL_LENGTH + 10))
    assert await arq_redis.llen(worker_bell_key("w1#a")) == BELL_LENGTH


async def test_an_abort_of_a_job_a_bare_arq_worker_runs_goes_to_arqs_abort_set_only(arq_redis):
    await arq_redis.psetex(in_progress_key_prefix + "exec:legacy", 60_000, b"1")
    await Dispatcher(arq_redis).abort("legacy")
    assert await arq_redis.zscore(abort_jobs_ss, "exec:legacy") is not None
    assert not await arq_redis.exists(aborts_key("1"))


async def test_a_lapsed_workers_pending_aborts_go_with_its_calls(arq_redis):
    queue, ready = _names()
    now = int(time.time() * 1000)
    await arq_redis.zadd(ready, {"exec:c": now - 2})
    assert await _jobs(_claimer(arq_redis, queue, "dead#1"), now, 100, 10, 60_000, LEASE_MS) == [("exec:c", now - 2)]
    await Dispatcher(arq_redis).abort("c")
    assert 3_500_000 < await arq_redis.pttl(aborts_key("dead#1")) <= 3_600_000
    await arq_redis.zadd(worker_leases_key(queue), {"dead#1": now - 1})

    alive = _claimer(arq_redis, queue, "alive#2")
    # Its start (the second: try 2) takes it from arq's abort set: its run_job aborts it before
    # it starts.
    assert await alive.claim(now, 100, 10, 60_000, LEASE_MS) == Claimed(
        [("exec:c", now - 2)], [], None, starts={"exec:c": JobStart(None, 2, aborted=True)}
    )
    assert not await arq_redis.exists(aborts_key("dead#1"))
    assert await arq_redis.llen(queue_bell_key(queue)) == 1  # what it put back rang the bell
    assert await arq_redis.zscore(abort_jobs_ss, "exec:c") is None


def test_a_late_poll_claims_in_proportion_to_its_lag():
    assert claims_allowed(100, 0.0) == 100
    assert claims_allowed(100, POLL_LAG_TARGET_S) == 100
    assert claims_allowed(100, POLL_LAG_TARGET_S * 4) == 25
    assert claims_allowed(100, 30.0) == 1  # never none: a congested worker still moves


async def test_a_claim_says_how_long_its_worker_may_wait_for_a_bell(arq_redis):
    queue, ready = _names()
    now = int(time.time() * 1000)
    claimer = _claimer(arq_redis, queue, "w#1")
    assert (await claimer.claim(now, 100, 10, 60_000, LEASE_MS)).wait_ms is None  # nothing known
    await arq_redis.zadd(ready, {"later": now + 700})
    assert (await claimer.claim(now, 100, 10, 60_000, LEASE_MS)).wait_ms == 700  # the next due
    # Another worker whose lease lapses sooner: its calls come back then.
    await arq_redis.zadd(worker_leases_key(queue), {"other#2": (await _server_ms(arq_redis)) + 300})
    assert 200 < _known((await claimer.claim(now, 100, 10, 60_000, LEASE_MS)).wait_ms) <= 300
    await arq_redis.set(paused_key(queue), b"1")  # paused: the lease still counts, jobs not
    await arq_redis.zadd(worker_leases_key(queue), {"other#2": (await _server_ms(arq_redis)) + 60_000})
    assert 59_000 < _known((await claimer.claim(now, 100, 10, 60_000, LEASE_MS)).wait_ms) <= 60_000


def _known(wait_ms: int | None) -> int:
    assert wait_ms is not None
    return wait_ms


async def _server_ms(redis: ArqRedis) -> int:
    seconds, micros = await redis.time()
    return seconds * 1000 + micros // 1000
