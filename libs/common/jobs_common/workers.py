"""The live worker registry in Redis: each worker writes its description on every heartbeat
(WORKER_HEARTBEAT_INTERVAL); one not seen for WORKER_LEASE_TTL counts as gone (its leases have
lapsed by then too) and is removed the next time the registry is read."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import cast

from redis.asyncio import Redis

__all__ = ["WORKERS_KEY", "WORKERS_SEEN_KEY", "WorkerInfo", "WorkerRegistry"]

WORKERS_KEY = "jobs:workers"  # hash: worker id -> JSON description
WORKERS_SEEN_KEY = "jobs:workers:seen"  # sorted set: worker id -> last heartbeat (ms since the epoch)


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    queue: str
    start_time: datetime
    last_heartbeat: datetime
    in_flight: int
    capacity: int
    version: str

    def to_json(self) -> str:
        data = asdict(self)
        data["start_time"] = self.start_time.isoformat()
        data["last_heartbeat"] = self.last_heartbeat.isoformat()
        return json.dumps(data)

    @classmethod
    def from_json(cls, raw: str | bytes) -> WorkerInfo:
        data = json.loads(raw)
        data["start_time"] = datetime.fromisoformat(data["start_time"])
        data["last_heartbeat"] = datetime.fromisoformat(data["last_heartbeat"])
        return cls(**data)


class WorkerRegistry:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def beat(self, info: WorkerInfo) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(WORKERS_KEY, info.id, info.to_json())
            pipe.zadd(WORKERS_SEEN_KEY, {info.id: int(info.last_heartbeat.timestamp() * 1000)})
            await pipe.execute()

    async def leave(self, worker_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(WORKERS_KEY, worker_id)
            pipe.zrem(WORKERS_SEEN_KEY, worker_id)
            await pipe.execute()

    async def live(self, dead_after: timedelta, queue: str | None = None) -> list[WorkerInfo]:
        """Workers seen within ``dead_after``, by id; forgets the others."""
        cutoff = int((time.time() - dead_after.total_seconds()) * 1000)
        gone = await self._redis.zrangebyscore(WORKERS_SEEN_KEY, "-inf", f"({cutoff}")
        if gone:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(WORKERS_SEEN_KEY, *gone)
                pipe.hdel(WORKERS_KEY, *gone)
                await pipe.execute()
        ids = await self._redis.zrangebyscore(WORKERS_SEEN_KEY, cutoff, "+inf")
        if not ids:
            return []
        # redis-py types hmget for its sync and async clients at once.
        described = await cast(Awaitable[list[bytes | None]], self._redis.hmget(WORKERS_KEY, ids))
        workers = [WorkerInfo.from_json(raw) for raw in described if raw is not None]
        return sorted((w for w in workers if queue is None or w.queue == queue), key=lambda w: w.id)
