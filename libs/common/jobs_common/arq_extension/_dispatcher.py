"""Putting executions on arq (:data:`ENQUEUE_SCRIPT`), putting back the ones it lost
(:data:`REDISPATCH_SCRIPT`), aborting them, and mirroring the queues' paused flags and rate
limits."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TypeAlias

from arq.connections import ArqRedis
from arq.constants import (
    abort_jobs_ss,
    expires_extra_ms,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.jobs import serialize_job

from jobs_common.arq_extension._dispatch import Dispatch
from jobs_common.arq_extension._keys import (
    ABORTS_KEY_PREFIX,
    BELL_LENGTH,
    MAX_IDLE_WAIT_MS,
    RUN_EXECUTION,
    WORKER_BELL_KEY_PREFIX,
    arq_job_id,
    arq_queue_name,
    flow_prefix,
    flow_ready_key,
    limits_key,
    paused_key,
    priority_score,
    queue_bell_key,
)
from jobs_common.arq_extension._scripts import (
    ABORT_SCRIPT,
    ENQUEUE_ARGS,
    ENQUEUE_SCRIPT,
    REDISPATCH_SCRIPT,
    RESUME_SCRIPT,
    UNQUEUE_SCRIPT,
)
from jobs_common.domain import RateLimits

__all__ = ["Dispatcher"]

# How long a worker's abort set outlives its last abort when nobody reads it: a live worker
# reads it at its next poll, a lapsed one's goes with its calls; this is only a backstop.
ABORTS_TTL_MS = 3_600_000


class Dispatcher:
    """Puts executions on arq and aborts them."""

    def __init__(self, redis: ArqRedis) -> None:
        self._redis = redis
        self._enqueue = redis.register_script(ENQUEUE_SCRIPT)
        self._redispatch = redis.register_script(REDISPATCH_SCRIPT)
        self._abort = redis.register_script(ABORT_SCRIPT)
        self._resume = redis.register_script(RESUME_SCRIPT)
        self._unqueue = redis.register_script(UNQUEUE_SCRIPT)

    async def dispatch(self, dispatches: Sequence[Dispatch]) -> int:
        """Enqueues executions in one round trip (one EVALSHA, however many), each due at its
        run_at, at its priority and under its flow key; returns how many were new to arq."""
        if not dispatches:
            return 0
        keys, args = _enqueue_many_arguments(dispatches)
        return sum(await self._enqueue(keys=keys, args=args))

    async def redispatch(self, dispatches: Sequence[Dispatch]) -> list[int]:
        """Makes arq hold each execution again (its run_at: its schedule time), at its priority
        and under its flow key; one pipelined round trip. Returns the script's answer per
        execution (see ``REDISPATCH_SCRIPT``).

        An execution that arq still holds is left alone. One it lost is enqueued afresh, after
        its result and retry keys are removed (arq refuses an id with a result)."""
        if not dispatches:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for dispatch in dispatches:
                keys, fixed, flow = _enqueue_arguments(dispatch)
                job_id = arq_job_id(dispatch.execution_id)
                await self._redispatch(
                    keys=[
                        keys[0],
                        keys[1],
                        retry_key_prefix + job_id,
                        in_progress_key_prefix + job_id,
                        keys[2],
                        keys[3],
                    ],
                    args=[*fixed, BELL_LENGTH, *flow],
                    client=pipe,
                )
            return [int(answer) for answer in await pipe.execute()]

    async def move(self, dispatch: Dispatch, queue: str, flow_key: str | None) -> bool:
        """Takes an execution out of where it waited (``queue``, under ``flow_key``) and enqueues
        it as ``dispatch`` says (a DEBOUNCE create moved its run and maybe its queue); one round
        trip. An execution a worker holds is left to it (its claim defers it to its new due time);
        returns whether it was moved."""
        job_id = arq_job_id(dispatch.execution_id)
        ready = arq_queue_name(queue) if flow_key is None else flow_ready_key(queue, flow_key)
        keys, args = _enqueue_many_arguments([dispatch])
        async with self._redis.pipeline(transaction=True) as pipe:
            await self._unqueue(
                keys=[job_key_prefix + job_id, in_progress_key_prefix + job_id, ready], args=[job_id], client=pipe
            )
            await self._enqueue(keys=keys, args=args, client=pipe)
            taken, _ = await pipe.execute()
        return bool(taken)

    async def set_paused(self, queue: str, paused: bool) -> None:
        await self.sync_paused({queue: paused})

    async def sync_limits(self, limits: Mapping[str, RateLimits]) -> None:
        """Makes each queue's limits key say what ``limits`` (PostgreSQL) says: the limits, or no
        key for a queue without (its claims then read one missing key and nothing else); one
        pipelined round trip."""
        if limits:
            async with self._redis.pipeline(transaction=False) as pipe:
                for queue, limit in limits.items():
                    if limit.unlimited:
                        pipe.delete(limits_key(queue))
                    else:
                        pipe.hset(
                            limits_key(queue),
                            mapping={
                                "rate": repr(limit.max_dispatches_per_second),
                                "burst": limit.burst,
                                "concurrent": limit.max_concurrent_dispatches,
                            },
                        )
                await pipe.execute()

    async def ring(self, queue: str) -> None:
        """Wakes the queue's waiting workers (to claim under limits that changed)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.lpush(queue_bell_key(queue), b"1")
            pipe.ltrim(queue_bell_key(queue), 0, BELL_LENGTH - 1)
            await pipe.execute()

    async def sync_paused(self, paused_flags: Mapping[str, bool]) -> None:
        """Makes each queue's paused key say what ``paused_flags`` (PostgreSQL) says (a resumed
        queue's bell rings, for its waiting workers); one pipelined round trip."""
        if paused_flags:
            async with self._redis.pipeline(transaction=False) as pipe:
                for queue, paused in paused_flags.items():
                    if paused:
                        pipe.set(paused_key(queue), b"1")
                    else:
                        await self._resume(
                            keys=[paused_key(queue), queue_bell_key(queue)], args=[BELL_LENGTH], client=pipe
                        )
                await pipe.execute()

    async def abort_many(self, execution_ids: Sequence[object]) -> None:
        """Asks the worker running each execution to cancel it (at its next poll); a worker that
        picks one later aborts it before it starts (arq ``allow_abort_jobs``). One pipelined
        round trip."""
        if not execution_ids:
            return
        now_ms = int(time.time() * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            for execution_id in execution_ids:
                job_id = arq_job_id(execution_id)
                await self._abort(
                    keys=[abort_jobs_ss, in_progress_key_prefix + job_id],
                    args=[now_ms, job_id, ABORTS_KEY_PREFIX, ABORTS_TTL_MS, WORKER_BELL_KEY_PREFIX, BELL_LENGTH],
                    client=pipe,
                )
            await pipe.execute()

    async def abort(self, execution_id: object) -> None:
        await self.abort_many([execution_id])


ScriptArg: TypeAlias = bytes | str | int | float


def _enqueue_arguments(dispatch: Dispatch) -> tuple[list[str], list[ScriptArg], list[ScriptArg]]:
    """What ``ENQUEUE_SCRIPT`` and ``REDISPATCH_SCRIPT`` take of one execution: its KEYS (job
    key, result key, queue, queue bell), its ARGV (TTL, payload, score in the priority's band:
    ``_keys.PRIORITY_BAND_MS``, id, ring-by score) and its flow key's (prefix, key, limits and
    since; none without one). A ``run_at`` in the past means now."""
    execution_id, queue, run_at, priority, flow = dispatch
    job_id = arq_job_id(execution_id)
    now_ms = int(time.time() * 1000)
    due = max(int(run_at.timestamp() * 1000), now_ms) if run_at is not None else now_ms
    payload = serialize_job(RUN_EXECUTION, (str(execution_id),), {}, None, now_ms)
    keys = [job_key_prefix + job_id, result_key_prefix + job_id, arq_queue_name(queue), queue_bell_key(queue)]
    ring_by = now_ms + MAX_IDLE_WAIT_MS  # a later job is seen by a waiting worker's next look
    score, ring_by_score = priority_score(due, priority), priority_score(ring_by, priority)
    args: list[ScriptArg] = [due - now_ms + expires_extra_ms, payload, score, job_id, ring_by_score]
    if flow is None:
        return keys, args, []
    return (
        keys,
        args,
        [flow_prefix(queue), flow.key, flow.max_concurrent, repr(flow.max_dispatches_per_second), flow.since_ms],
    )


_NO_FLOW: list[ScriptArg] = [""] * (ENQUEUE_ARGS - 5)


def _enqueue_many_arguments(dispatches: Sequence[Dispatch]) -> tuple[list[str], list[ScriptArg]]:
    """KEYS and ARGV of ``ENQUEUE_SCRIPT`` for ``dispatches``."""
    keys: list[str] = []
    args: list[ScriptArg] = [BELL_LENGTH]
    for dispatch in dispatches:
        own_keys, fixed, flow = _enqueue_arguments(dispatch)
        keys += own_keys
        args += fixed
        args += flow or _NO_FLOW
    return keys, args
