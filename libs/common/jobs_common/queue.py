"""The arq contract shared by the api and the worker.

* One function, :data:`RUN_EXECUTION`, runs an execution: ``run_execution(ctx, execution_id)``.
* The arq job id is derived from the execution id (:func:`arq_job_id`), so enqueueing an execution
  twice is a no-op: the api, a retried CreateJob and (later) the reconciler can all dispatch freely.
* A job's ``queue`` maps to the arq queue (sorted set) :func:`arq_queue_name`.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import abort_jobs_ss, expires_extra_ms, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job

from jobs_common.settings import Settings

__all__ = [
    "ARQ_MAX_TRIES",
    "RUN_EXECUTION",
    "Dispatcher",
    "arq_job_id",
    "arq_queue_name",
    "create_redis_pool",
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


def redis_settings(settings: Settings) -> RedisSettings:
    """arq's connection settings, with retries so a Redis restart does not end a process."""
    base = RedisSettings.from_dsn(settings.redis_dsn)
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


class Dispatcher:
    """Puts executions on arq and aborts them."""

    def __init__(self, redis: ArqRedis) -> None:
        self._redis = redis
        self._enqueue = redis.register_script(_ENQUEUE_SCRIPT)

    async def dispatch(self, execution_id: object, queue: str, run_at: datetime | None = None) -> bool:
        """Enqueues ``run_execution`` exactly as arq's ``enqueue_job`` would; returns False when
        arq already holds this execution (queued, running, or finished with its result kept)."""
        job_id = arq_job_id(execution_id)
        now_ms = int(time.time() * 1000)
        score = int(run_at.timestamp() * 1000) if run_at is not None else now_ms
        payload = serialize_job(RUN_EXECUTION, (str(execution_id),), {}, None, now_ms)
        added = await self._enqueue(
            keys=[job_key_prefix + job_id, result_key_prefix + job_id, arq_queue_name(queue)],
            args=[max(score - now_ms, 0) + expires_extra_ms, payload, score, job_id],
        )
        return bool(added)

    async def abort(self, execution_id: object) -> None:
        """Asks the worker running this execution to cancel it (arq ``allow_abort_jobs``); a
        worker that picks it later aborts it before it starts."""
        await self._redis.zadd(abort_jobs_ss, {arq_job_id(execution_id): int(time.time() * 1000)})
