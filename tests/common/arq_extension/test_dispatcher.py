"""The dispatcher's one-round-trip enqueue writes exactly what arq's enqueue_job writes."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from arq.constants import expires_extra_ms, job_key_prefix, result_key_prefix
from arq.jobs import Job, JobStatus, deserialize_job_raw

from jobs_common.arq_extension import RUN_EXECUTION, Dispatch, Dispatcher, arq_job_id, arq_queue_name, paused_key
from jobs_common.arq_extension._dispatch import Flow
from jobs_common.arq_extension._keys import BELL_LENGTH, MAX_IDLE_WAIT_MS, flow_prefix, flow_ready_key, queue_bell_key


async def test_dispatch_enqueues_once_in_arqs_own_format(arq_redis):
    execution_id = uuid.uuid4()
    queue = f"q-{execution_id.hex[:8]}"
    dispatcher = Dispatcher(arq_redis)
    before_ms = int(time.time() * 1000)

    assert await dispatcher.dispatch([Dispatch(execution_id, queue)]) == 1
    assert await dispatcher.dispatch([Dispatch(execution_id, queue)]) == 0

    job_id = arq_job_id(execution_id)
    function, args, kwargs, job_try, enqueue_ms = deserialize_job_raw(await arq_redis.get(job_key_prefix + job_id))
    assert (function, args, kwargs) == (RUN_EXECUTION, (str(execution_id),), {})
    assert not job_try  # like enqueue_job without _job_try
    assert before_ms <= enqueue_ms <= time.time() * 1000
    assert before_ms <= await arq_redis.zscore(arq_queue_name(queue), job_id) <= time.time() * 1000
    assert 0 < await arq_redis.pttl(job_key_prefix + job_id) <= expires_extra_ms
    assert await Job(job_id, arq_redis, _queue_name=arq_queue_name(queue)).status() == JobStatus.queued


async def test_deferred_dispatch_scores_at_run_at_and_outlives_it(arq_redis):
    execution_id = uuid.uuid4()
    queue = f"q-{execution_id.hex[:8]}"
    run_at = datetime.now(UTC) + timedelta(hours=2)
    await Dispatcher(arq_redis).dispatch([Dispatch(execution_id, queue, run_at)])
    job_id = arq_job_id(execution_id)
    assert await arq_redis.zscore(arq_queue_name(queue), job_id) == int(run_at.timestamp() * 1000)
    assert await arq_redis.pttl(job_key_prefix + job_id) > 2 * 3600 * 1000 + expires_extra_ms - 60_000


async def test_a_kept_result_blocks_a_second_dispatch_like_arq(arq_redis):
    execution_id = uuid.uuid4()
    await arq_redis.set(result_key_prefix + arq_job_id(execution_id), b"done", px=60_000)
    assert await Dispatcher(arq_redis).dispatch([Dispatch(execution_id, "default")]) == 0
    assert await arq_redis.exists(job_key_prefix + arq_job_id(execution_id)) == 0


async def test_what_is_due_soon_rings_the_queues_bell_and_what_is_later_does_not(arq_redis):
    queue = f"q-{uuid.uuid4().hex[:8]}"
    bell = queue_bell_key(queue)
    dispatcher = Dispatcher(arq_redis)
    soon = datetime.now(UTC) + timedelta(milliseconds=MAX_IDLE_WAIT_MS // 2)
    later = datetime.now(UTC) + timedelta(milliseconds=MAX_IDLE_WAIT_MS * 3)

    await dispatcher.dispatch([Dispatch(uuid.uuid4(), queue)])
    await dispatcher.dispatch([Dispatch(uuid.uuid4(), queue, soon)])
    assert await arq_redis.llen(bell) == 2  # one ring per job: each wakes one waiting worker
    # A waiting worker looks again within MAX_IDLE_WAIT_MS anyway, and sees this one then.
    await dispatcher.dispatch([Dispatch(uuid.uuid4(), queue, later)])
    assert await arq_redis.llen(bell) == 2
    # Rings nobody took stay bounded.
    await dispatcher.dispatch([Dispatch(uuid.uuid4(), queue) for _ in range(BELL_LENGTH + 10)])
    assert await arq_redis.llen(bell) == BELL_LENGTH


async def test_one_dispatch_of_many_treats_each_as_alone(arq_redis):
    """One call, one script: jobs of two queues, with and without a flow key, now and later, and
    one arq holds already; each lands where its own dispatch would put it, each due one rings its
    queue's bell once."""
    first, second = (f"q-{uuid.uuid4().hex[:8]}" for _ in range(2))
    dispatcher = Dispatcher(arq_redis)
    held = uuid.uuid4()
    assert await dispatcher.dispatch([Dispatch(held, first)]) == 1
    later = datetime.now(UTC) + timedelta(hours=1)
    plain, keyed, deferred, other = (uuid.uuid4() for _ in range(4))
    batch = [
        Dispatch(plain, first),
        Dispatch(held, first),
        Dispatch(keyed, first, flow=Flow("tenant/a", max_concurrent=2, since_ms=1)),
        Dispatch(deferred, first, later),
        Dispatch(other, second, priority=3),
    ]

    assert await dispatcher.dispatch(batch) == 4

    ready = arq_queue_name(first)
    assert set(await arq_redis.zrange(ready, 0, -1)) == {arq_job_id(i).encode() for i in (held, plain, deferred)}
    assert await arq_redis.zscore(ready, arq_job_id(deferred)) == int(later.timestamp() * 1000)
    assert await arq_redis.zrange(flow_ready_key(first, "tenant/a"), 0, -1) == [arq_job_id(keyed).encode()]
    assert await arq_redis.hget(flow_prefix(first) + "limits", "tenant/a") == b"2 0.0 1"
    assert await arq_redis.zrange(arq_queue_name(second), 0, -1) == [arq_job_id(other).encode()]
    assert await arq_redis.zscore(arq_queue_name(second), arq_job_id(other)) < 0  # its priority's band
    for execution_id in (plain, keyed, deferred, other):
        assert await arq_redis.exists(job_key_prefix + arq_job_id(execution_id)) == 1
    # The first queue: its first job's ring, then plain's and keyed's (the deferred one is later).
    assert await arq_redis.llen(queue_bell_key(first)) == 3
    assert await arq_redis.llen(queue_bell_key(second)) == 1


async def test_a_redispatch_that_puts_a_job_back_rings_and_one_that_leaves_it_does_not(arq_redis):
    queue = f"q-{uuid.uuid4().hex[:8]}"
    bell = queue_bell_key(queue)
    dispatcher = Dispatcher(arq_redis)
    execution_id, now = uuid.uuid4(), datetime.now(UTC)
    assert await dispatcher.redispatch([Dispatch(execution_id, queue, now)]) == [1]  # arq had lost it
    assert await arq_redis.llen(bell) == 1
    assert await dispatcher.redispatch([Dispatch(execution_id, queue, now)]) == [0]  # queued already
    assert await arq_redis.llen(bell) == 1


async def test_a_resume_rings_only_a_queue_that_was_paused(arq_redis):
    queue = f"q-{uuid.uuid4().hex[:8]}"
    bell = queue_bell_key(queue)
    dispatcher = Dispatcher(arq_redis)
    await dispatcher.set_paused(queue, False)  # the reconciler says so at every pass
    assert not await arq_redis.exists(bell)
    await dispatcher.set_paused(queue, True)
    await dispatcher.set_paused(queue, False)
    assert not await arq_redis.exists(paused_key(queue))
    assert await arq_redis.llen(bell) == 1
