"""What a queue's rate limits hold back now, read from Redis as the claim reckons
(:data:`LIMITS_STATE_SCRIPT`, one round trip, nothing written)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis

from jobs_common.arq_extension._keys import (
    HELD_KEY_PREFIX,
    PRIORITY_BAND_MS,
    arq_queue_name,
    limits_key,
    tokens_key,
    worker_leases_key,
)
from jobs_common.arq_extension._scripts import LIMITS_STATE_SCRIPT

__all__ = ["HeldBack", "LimitsState"]


@dataclass(frozen=True, slots=True)
class HeldBack:
    """A queue's calls open now across its live workers, and its due ready jobs that wait
    because its max_concurrent_dispatches calls are open, or for a token of its rate."""

    open_dispatches: int = 0
    waiting_for_concurrency: int = 0
    waiting_for_rate: int = 0


class LimitsState:
    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(LIMITS_STATE_SCRIPT)

    async def read(self, queue: str) -> HeldBack:
        keys = [arq_queue_name(queue), worker_leases_key(queue), limits_key(queue), tokens_key(queue)]
        now_ms = int(time.time() * 1000)
        open_, due, concurrent, tokens = await self._script(keys=keys, args=[now_ms, HELD_KEY_PREFIX, PRIORITY_BAND_MS])
        open_, due, concurrent, tokens = int(open_), int(due), int(concurrent), int(tokens)
        if concurrent and open_ >= concurrent:
            return HeldBack(open_, waiting_for_concurrency=due)
        if tokens == 0:
            return HeldBack(open_, waiting_for_rate=due)
        return HeldBack(open_)
