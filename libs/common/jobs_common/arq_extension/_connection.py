"""Connecting to Redis as arq does, with retries, and the eviction check every process makes.
With REDIS_SENTINELS, the primary is found through Redis Sentinel and found again after a
failover (each new connection asks the Sentinels), with the Sentinels' own password if set."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

from jobs_common.settings import Settings

__all__ = ["JobsRedisSettings", "connect", "create_redis_pool", "redis_settings", "warn_if_redis_can_evict"]

logger = logging.getLogger(__name__)


@dataclass
class JobsRedisSettings(RedisSettings):
    """arq's settings plus what its Sentinel support lacks: the Sentinels' own password."""

    sentinel_password: str | None = None


def redis_settings(settings: Settings) -> JobsRedisSettings:
    """arq's connection settings, with retries so a Redis restart does not end a process."""
    if settings.redis_url:
        base = JobsRedisSettings(**vars(RedisSettings.from_dsn(settings.redis_url)))
    elif settings.sentinel_addresses:
        base = JobsRedisSettings(
            host=settings.sentinel_addresses,  # with sentinel=True, arq's host is the list of Sentinels
            sentinel=True,
            sentinel_master=settings.redis_sentinel_master,
            sentinel_password=settings.redis_sentinel_password,
            database=settings.redis_db,
            username=settings.redis_username,
            password=settings.redis_password,
        )
    else:
        base = JobsRedisSettings(
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


class _SentinelArqRedis(ArqRedis):
    """arq's client on a Sentinel-managed pool; closing it closes the Sentinel connections too."""

    sentinel_manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinel_manager is not None:
            for client in self.sentinel_manager.sentinels:
                await client.aclose()


async def connect(settings: RedisSettings, **options: Any) -> ArqRedis:
    """arq's ``create_pool`` (``options`` are its keyword arguments), through Sentinel when the
    settings say so."""
    if not settings.sentinel:
        return await create_pool(settings, **options)
    return await _sentinel_pool(settings, **options)


async def _sentinel_pool(
    settings: RedisSettings,
    job_serializer: Any = None,
    job_deserializer: Any = None,
    default_queue_name: str | None = None,
    expires_extra_ms: int | None = None,
) -> ArqRedis:
    """As arq's ``create_pool`` does for Sentinel, with the connect timeout and the retry on
    timeout applied to the primary's connections and the Sentinels' password to theirs."""
    timeouts = {"socket_connect_timeout": settings.conn_timeout, "socket_timeout": settings.conn_timeout}
    password = getattr(settings, "sentinel_password", None)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        settings.host,
        sentinel_kwargs={**timeouts, **({"password": password} if password else {})},
        socket_connect_timeout=settings.conn_timeout,
        retry_on_timeout=settings.retry_on_timeout,
        ssl=settings.ssl,
    )
    pool: _SentinelArqRedis = sentinel.master_for(
        settings.sentinel_master,
        redis_class=_SentinelArqRedis,
        db=settings.database,
        username=settings.username,
        password=settings.password,
        encoding="utf8",
    )
    pool.sentinel_manager = sentinel
    pool.job_serializer = job_serializer
    pool.job_deserializer = job_deserializer
    if default_queue_name is not None:
        pool.default_queue_name = default_queue_name
    if expires_extra_ms is not None:
        pool.expires_extra_ms = expires_extra_ms
    for retry in range(settings.conn_retries + 1):
        try:
            await pool.ping()
        except (TimeoutError, ConnectionError, OSError, RedisError) as error:
            if retry == settings.conn_retries:
                await pool.aclose()
                raise
            logger.warning(
                "redis primary %r not reachable through the Sentinels (%s: %s), %d retries remaining",
                settings.sentinel_master,
                type(error).__name__,
                error,
                settings.conn_retries - retry,
            )
            await asyncio.sleep(settings.conn_retry_delay)
        else:
            return pool
    raise AssertionError("unreachable")


async def create_redis_pool(settings: Settings) -> ArqRedis:
    pool = await connect(redis_settings(settings))
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
