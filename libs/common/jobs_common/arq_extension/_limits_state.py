"""What a queue's rate limits and its flow keys' hold back now, read from Redis as the claim
reckons (:data:`LIMITS_STATE_SCRIPT`, one round trip, nothing written)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from redis.asyncio import Redis

from jobs_common.arq_extension._keys import (
    HELD_KEY_PREFIX,
    PRIORITY_BAND_MS,
    arq_queue_name,
    flow_prefix,
    limits_key,
    tokens_key,
    worker_leases_key,
)
from jobs_common.arq_extension._scripts import LIMITS_STATE_SCRIPT

__all__ = ["FlowKeyState", "HeldBack", "LimitsState"]

# Flow keys read at most per look (the busiest are among them), and the busiest shown.
KEYS_READ = 1000
BUSIEST_KEYS = 10


@dataclass(frozen=True, slots=True)
class FlowKeyState:
    """One flow key of a queue: its due ready jobs and its calls open now."""

    key: str
    due: int
    open: int


@dataclass(frozen=True, slots=True)
class HeldBack:
    """A queue's calls open now across its live workers, and its due ready jobs that wait
    because its max_concurrent_dispatches calls are open, or for a token of its rate."""

    open_dispatches: int = 0
    waiting_for_concurrency: int = 0
    waiting_for_rate: int = 0
    # Flow keys with ready jobs; due jobs waiting for their key's slot or token (of the first
    # KEYS_READ keys); the BUSIEST_KEYS keys with the most due jobs.
    flow_keys: int = 0
    waiting_for_key_concurrency: int = 0
    waiting_for_key_rate: int = 0
    busiest_keys: tuple[FlowKeyState, ...] = field(default=())


class LimitsState:
    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(LIMITS_STATE_SCRIPT)

    async def read(self, queue: str) -> HeldBack:
        keys = [arq_queue_name(queue), worker_leases_key(queue), limits_key(queue), tokens_key(queue)]
        now_ms = int(time.time() * 1000)
        args: list[str | int] = [now_ms, HELD_KEY_PREFIX, PRIORITY_BAND_MS, flow_prefix(queue), KEYS_READ, BUSIEST_KEYS]
        open_, due, concurrent, tokens, key_count, for_slot, for_token, busiest = await self._script(
            keys=keys, args=args
        )
        open_, due, concurrent, tokens = int(open_), int(due), int(concurrent), int(tokens)
        queue_full = bool(concurrent) and open_ >= concurrent
        return HeldBack(
            open_,
            waiting_for_concurrency=due if queue_full else 0,
            waiting_for_rate=due if not queue_full and tokens == 0 else 0,
            flow_keys=int(key_count),
            waiting_for_key_concurrency=int(for_slot),
            waiting_for_key_rate=int(for_token),
            busiest_keys=tuple(
                FlowKeyState(busiest[i].decode(), int(busiest[i + 1]), int(busiest[i + 2]))
                for i in range(0, len(busiest), 3)
            ),
        )
