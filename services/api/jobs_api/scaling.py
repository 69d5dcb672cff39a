"""GetScalingRecommendation's policy (the original plan's): scale up when the backlog needs more
workers than run; scale down only once the queue has been idle for the cooldown.

    needed  = ceil(backlog / (per_worker_capacity * target_utilization))   (0 when backlog is 0)
    desired = clamp(needed, min_workers, max_workers)
    if desired < current and the queue has not been idle (backlog 0) for the cooldown:
        desired = current

``backlog`` counts executions running or due within SCALING_DUE_WITHIN, the same figure KEDA's
external scaler serves. The idle clock lives in Redis (one hash field per queue), so every api
replica answers alike; it is restarted whenever a replica sees the queue busy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

from redis.asyncio import Redis

__all__ = ["IdleClock", "ScalingInputs", "recommend"]

LAST_BUSY_KEY = "jobs:scaling:last-busy"  # hash: queue -> when it was last seen busy (ms)


@dataclass(frozen=True, slots=True)
class ScalingInputs:
    backlog: int
    current_workers: int
    per_worker_capacity: int
    target_utilization: float
    min_workers: int
    max_workers: int
    scale_down_cooldown: timedelta
    idle_for: timedelta


def recommend(inputs: ScalingInputs) -> tuple[int, str]:
    """(desired workers, why)."""
    per_worker = inputs.per_worker_capacity * inputs.target_utilization
    needed = math.ceil(inputs.backlog / per_worker) if inputs.backlog else 0
    desired = min(max(needed, inputs.min_workers), inputs.max_workers)
    basis = (
        f"backlog {inputs.backlog} / ({inputs.per_worker_capacity} * {inputs.target_utilization:g}) "
        f"needs {needed}, within [{inputs.min_workers}, {inputs.max_workers}]: {desired}"
    )
    if desired < inputs.current_workers:
        if inputs.backlog or inputs.idle_for < inputs.scale_down_cooldown:
            waited = "busy" if inputs.backlog else f"idle for {inputs.idle_for.total_seconds():.0f}s"
            cooldown = inputs.scale_down_cooldown.total_seconds()
            return (
                inputs.current_workers,
                f"{basis}; {waited}, under the {cooldown:.0f}s cooldown: keep {inputs.current_workers}",
            )
        return desired, f"{basis}; idle past the cooldown: scale down"
    if desired > inputs.current_workers:
        return desired, f"{basis}; scale up from {inputs.current_workers}"
    return desired, f"{basis}; no change"


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
