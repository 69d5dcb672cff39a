"""Connecting to Redis as arq does, with retries, and the eviction check every process makes."""

from __future__ import annotations

import logging

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from jobs_common.settings import Settings

__all__ = ["create_redis_pool", "redis_settings", "warn_if_redis_can_evict"]

logger = logging.getLogger(__name__)


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
