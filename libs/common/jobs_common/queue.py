"""The arq contract shared by the api and the worker.

* One function, :data:`RUN_EXECUTION`, runs an execution: ``run_execution(ctx, execution_id)``.
* The arq job id is derived from the execution id (:func:`arq_job_id`), so enqueueing an execution
  twice is a no-op: the api, a retried CreateJob and the scheduler can all dispatch freely, and
  the reconciler re-dispatches under the same id.
* A job's ``queue`` maps to the arq queue (sorted set) :func:`arq_queue_name`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TypeAlias

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import (
    abort_jobs_ss,
    expires_extra_ms,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.jobs import serialize_job

from jobs_common.settings import Settings

__all__ = [
    "ARQ_MAX_TRIES",
    "RUN_EXECUTION",
    "Dispatcher",
    "arq_job_id",
    "arq_queue_name",
    "create_redis_pool",
    "paused_key",
    "redis_settings",
    "warn_if_redis_can_evict",
]

logger = logging.getLogger(__name__)

RUN_EXECUTION = "run_execution"

# Attempts are counted in PostgreSQL; arq's own try counter (which also counts redeliveries after
# a shutdown) is only a backstop against a bug that would loop forever.
ARQ_MAX_TRIES = 10_000


def arq_job_id(execution_id: object) -> str:
    return f"exec:{execution_id}"


def arq_queue_name(queue: str) -> str:
    return f"jobs:queue:{queue}"


def paused_key(queue: str) -> str:
    """Exists while the queue is paused (QueueService.PauseQueue); its workers then claim nothing.
    PostgreSQL's queue_settings is the record; the reconciler sets this key again after a loss."""
    return f"jobs:paused:{queue}"


def redis_settings(settings: Settings) -> RedisSettings:
    """arq's connection settings, with retries so a Redis restart does not end a process."""
    if settings.redis_url:
        base = RedisSettings.from_dsn(settings.redis_url)
    else:
        base = RedisSettings(
            host=settings.redis_host,
            port=settings.redis_port,
            database=settings.redis_db,
            username=settings.redis_username,
            password=settings.redis_password,
        )
    base.conn_retries = 10
    base.conn_retry_delay = 1
    base.retry_on_timeout = True
    base.conn_timeout = 2
    return base


async def create_redis_pool(settings: Settings) -> ArqRedis:
    pool = await create_pool(redis_settings(settings))
    await warn_if_redis_can_evict(pool)
    return pool


async def warn_if_redis_can_evict(redis: ArqRedis) -> str:
    """Logs a warning unless Redis runs with ``maxmemory-policy noeviction``: every other policy
    may drop arq's keys (its job keys carry a TTL, so even ``volatile-*`` policies can take them).
    An evicted job is not lost (PostgreSQL has it) but runs late. Reads ``INFO memory``, so it
    needs no CONFIG permission."""
    info = await redis.info("memory")
    policy = str(info.get("maxmemory_policy", "unknown"))
    if policy != "noeviction":
        logger.warning(
            "Redis maxmemory-policy is %r: under memory pressure Redis may evict queued jobs, which then "
            "wait for re-dispatch from PostgreSQL. Run Redis with maxmemory-policy noeviction.",
            policy,
        )
    return policy


# arq's enqueue_job in one round trip instead of three (WATCH, EXISTS, MULTI/EXEC): the same
# check (no job and no result under this id) and the same writes (job key with expiry, queue
# entry), atomic because Lua scripts are.
_ENQUEUE_SCRIPT = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('PSETEX', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return 1
"""


# The reconciler's re-dispatch of an execution PostgreSQL says is unfinished. KEYS: job, result,
# retry, in-progress keys, queue. ARGV: job key TTL, payload, score, job id. Returns 1 when it
# enqueued the job again, 2 when it put a held job back in the queue, 0 when arq holds the job as
# it should. A job whose in-progress key exists is left alone: its worker renews that key with
# its heartbeat, so the key outlives the worker by one WORKER_LEASE_TTL at most.
_REDISPATCH_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    if redis.call('EXISTS', KEYS[4]) == 0 and redis.call('ZADD', KEYS[5], 'NX', ARGV[3], ARGV[4]) == 1 then
        return 2
    end
    return 0
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('PSETEX', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[4])
return 1
"""


class Dispatcher:
    """Puts executions on arq and aborts them."""

    def __init__(self, redis: ArqRedis) -> None:
        self._redis = redis
        self._enqueue = redis.register_script(_ENQUEUE_SCRIPT)
        self._redispatch = redis.register_script(_REDISPATCH_SCRIPT)

    async def dispatch(self, execution_id: object, queue: str, run_at: datetime | None = None) -> bool:
        """Enqueues ``run_execution`` exactly as arq's ``enqueue_job`` would; returns False when
        arq already holds this execution (queued, running, or finished with its result kept)."""
        keys, args = _enqueue_arguments(execution_id, queue, run_at)
        return bool(await self._enqueue(keys=keys, args=args))

    async def dispatch_many(self, executions: Sequence[tuple[object, str]]) -> int:
        """Enqueues due executions (id, queue) in one pipelined round trip; returns how many
        were new to arq."""
        return await self.dispatch_at([(execution_id, queue, None) for execution_id, queue in executions])

    async def dispatch_at(self, executions: Sequence[tuple[object, str, datetime | None]]) -> int:
        """Enqueues executions (id, queue, run_at or None for now) in one pipelined round trip;
        returns how many were new to arq."""
        if not executions:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for execution_id, queue, run_at in executions:
                keys, args = _enqueue_arguments(execution_id, queue, run_at)
                await self._enqueue(keys=keys, args=args, client=pipe)
            results = await pipe.execute()
        return sum(1 for added in results if added)

    async def redispatch(self, executions: Sequence[tuple[object, str, datetime]]) -> list[int]:
        """Makes arq hold each (id, queue, schedule time) again; one pipelined round trip.
        Returns the script's answer per execution (see ``_REDISPATCH_SCRIPT``).

        An execution that arq still holds is left alone. One it lost is enqueued afresh, after
        its result and retry keys are removed (arq refuses an id with a result)."""
        if not executions:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for execution_id, queue, schedule_time in executions:
                keys, args = _enqueue_arguments(execution_id, queue, schedule_time)
                job_id = arq_job_id(execution_id)
                await self._redispatch(
                    keys=[keys[0], keys[1], retry_key_prefix + job_id, in_progress_key_prefix + job_id, keys[2]],
                    args=args,
                    client=pipe,
                )
            return [int(answer) for answer in await pipe.execute()]

    async def set_paused(self, queue: str, paused: bool) -> None:
        await self.sync_paused({queue: paused})

    async def sync_paused(self, paused_flags: Mapping[str, bool]) -> None:
        """Makes each queue's paused key say what ``paused_flags`` (PostgreSQL) says; one
        pipelined round trip."""
        if paused_flags:
            async with self._redis.pipeline(transaction=False) as pipe:
                for queue, paused in paused_flags.items():
                    if paused:
                        pipe.set(paused_key(queue), b"1")
                    else:
                        pipe.delete(paused_key(queue))
                await pipe.execute()

    async def abort_many(self, execution_ids: Sequence[object]) -> None:
        if execution_ids:
            now_ms = int(time.time() * 1000)
            await self._redis.zadd(abort_jobs_ss, {arq_job_id(e): now_ms for e in execution_ids})

    async def abort(self, execution_id: object) -> None:
        """Asks the worker running this execution to cancel it (arq ``allow_abort_jobs``); a
        worker that picks it later aborts it before it starts."""
        await self._redis.zadd(abort_jobs_ss, {arq_job_id(execution_id): int(time.time() * 1000)})


ScriptArg: TypeAlias = bytes | str | int | float


def _enqueue_arguments(execution_id: object, queue: str, run_at: datetime | None) -> tuple[list[str], list[ScriptArg]]:
    """KEYS and ARGV of ``_ENQUEUE_SCRIPT``: job key, result key, queue; TTL, payload, score, id.
    A ``run_at`` in the past means now."""
    job_id = arq_job_id(execution_id)
    now_ms = int(time.time() * 1000)
    score = max(int(run_at.timestamp() * 1000), now_ms) if run_at is not None else now_ms
    payload = serialize_job(RUN_EXECUTION, (str(execution_id),), {}, None, now_ms)
    keys = [job_key_prefix + job_id, result_key_prefix + job_id, arq_queue_name(queue)]
    return keys, [score - now_ms + expires_extra_ms, payload, score, job_id]
