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
from arq.constants import abort_jobs_ss

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


class Dispatcher:
    """Puts executions on arq and aborts them."""

    def __init__(self, redis: ArqRedis) -> None:
        self._redis = redis

    async def dispatch(self, execution_id: object, queue: str, run_at: datetime | None = None) -> bool:
        """Enqueues ``run_execution``; returns False when arq already holds this execution."""
        job = await self._redis.enqueue_job(
            RUN_EXECUTION,
            str(execution_id),
            _job_id=arq_job_id(execution_id),
            _queue_name=arq_queue_name(queue),
            _defer_until=run_at,
        )
        return job is not None

    async def abort(self, execution_id: object) -> None:
        """Asks the worker running this execution to cancel it (arq ``allow_abort_jobs``); a
        worker that picks it later aborts it before it starts."""
        await self._redis.zadd(abort_jobs_ss, {arq_job_id(execution_id): int(time.time() * 1000)})
