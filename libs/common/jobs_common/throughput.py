"""Per-queue throughput figures for QueueService.GetQueueStats, kept in Redis.

A worker counts what it starts and finishes in memory and writes the counts with its heartbeat
(one pipelined round trip every WORKER_HEARTBEAT_INTERVAL, nothing per job): 10-second buckets
``jobs:stats:<queue>:<bucket>`` (a hash of started/succeeded/failed, kept two hours) and the last
``DURATION_SAMPLE`` attempt durations of the queue (a capped list). A read sums the buckets of the
last minute and of the last hour, so the figures lag by at most one heartbeat and count whole
10-second buckets (the "last minute" spans 60 to 70 seconds).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass
from typing import Literal, cast

from redis.asyncio import Redis

__all__ = ["BUCKET_SECONDS", "DURATION_SAMPLE", "Throughput", "ThroughputFigures", "read_throughput"]

BUCKET_SECONDS = 10
DURATION_SAMPLE = 1000
_KEEP_SECONDS = 2 * 3600
Event = Literal["started", "succeeded", "failed"]


def _bucket_key(queue: str, bucket: int) -> str:
    return f"jobs:stats:{queue}:{bucket}"


def _durations_key(queue: str) -> str:
    return f"jobs:stats:{queue}:durations"


class Throughput:
    """A worker's unwritten counts and durations for its queue."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self._counts: Counter[tuple[int, Event]] = Counter()
        self._durations: list[float] = []

    def count(self, event: Event) -> None:
        self._counts[(int(time.time()) // BUCKET_SECONDS, event)] += 1

    def duration(self, seconds: float) -> None:
        self._durations.append(seconds)

    async def flush(self, redis: Redis) -> None:
        """Writes what was counted since the last flush; kept for the next one if Redis fails."""
        counts, durations = self._counts, self._durations
        if not counts and not durations:
            return
        self._counts, self._durations = Counter(), []
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for (bucket, event), n in counts.items():
                    pipe.hincrby(_bucket_key(self.queue, bucket), event, n)
                    pipe.expire(_bucket_key(self.queue, bucket), _KEEP_SECONDS)
                if durations:
                    pipe.lpush(_durations_key(self.queue), *(f"{d:.6f}" for d in durations))
                    pipe.ltrim(_durations_key(self.queue), 0, DURATION_SAMPLE - 1)
                await pipe.execute()
        except BaseException:
            self._counts.update(counts)
            self._durations[:0] = durations
            raise


@dataclass(frozen=True, slots=True)
class ThroughputFigures:
    started_last_minute: int
    succeeded_last_minute: int
    failed_last_minute: int
    started_last_hour: int
    succeeded_last_hour: int
    failed_last_hour: int
    duration_p50: float | None
    duration_p95: float | None
    duration_mean: float | None
    duration_sample: int


async def read_throughput(redis: Redis, queue: str) -> ThroughputFigures:
    now_bucket = int(time.time()) // BUCKET_SECONDS
    buckets = range(now_bucket - 3600 // BUCKET_SECONDS, now_bucket + 1)
    async with redis.pipeline(transaction=False) as pipe:
        for bucket in buckets:
            pipe.hgetall(_bucket_key(queue, bucket))
        pipe.lrange(_durations_key(queue), 0, DURATION_SAMPLE - 1)
        *hashes, raw_durations = await pipe.execute()
    minute_from = now_bucket - 60 // BUCKET_SECONDS
    hour: Counter[str] = Counter()
    minute: Counter[str] = Counter()
    for bucket, counts in zip(buckets, hashes, strict=True):
        for event, n in cast(dict[bytes, bytes], counts).items():
            hour[event.decode()] += int(n)
            if bucket >= minute_from:
                minute[event.decode()] += int(n)
    durations = sorted(float(d) for d in cast(list[bytes], raw_durations))
    p50 = p95 = None
    if durations:
        p50 = statistics.median(durations)
        p95 = durations[min(len(durations) - 1, round(0.95 * (len(durations) - 1)))]
    return ThroughputFigures(
        started_last_minute=minute["started"],
        succeeded_last_minute=minute["succeeded"],
        failed_last_minute=minute["failed"],
        started_last_hour=hour["started"],
        succeeded_last_hour=hour["succeeded"],
        failed_last_hour=hour["failed"],
        duration_p50=p50,
        duration_p95=p95,
        duration_mean=statistics.fmean(durations) if durations else None,
        duration_sample=len(durations),
    )
