"""When each queue was last seen busy, for GetScalingRecommendation's scale-down cooldown
(:mod:`jobs_common.domain._scaling`). The clock lives in Redis (one hash field per queue), so
every api replica answers alike; it is restarted whenever a replica sees the queue busy."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from datetime import timedelta
from typing import cast

from redis.asyncio import Redis

__all__ = ["IdleClock"]

LAST_BUSY_KEY = "jobs:scaling:last-busy"  # hash: queue -> when it was last seen busy (ms)


class IdleClock:
    """When each queue was last seen busy, shared by every api replica through Redis."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def observe(self, queue: str, busy: bool) -> timedelta:
        """Records what was just seen; returns how long the queue has been idle (0 when busy).
        A queue never seen before starts its idle clock now."""
        now_ms = int(time.time() * 1000)
        if busy:
            await cast(Awaitable[int], self._redis.hset(LAST_BUSY_KEY, queue, str(now_ms)))
            return timedelta(0)
        await cast(Awaitable[bool], self._redis.hsetnx(LAST_BUSY_KEY, queue, str(now_ms)))
        last_busy = await cast(Awaitable[bytes | None], self._redis.hget(LAST_BUSY_KEY, queue))
        return timedelta(milliseconds=max(0, now_ms - int(last_busy or now_ms)))
