"""Which due jobs this worker starts, and which of its jobs it aborts, in one Redis round trip
(:data:`CLAIM_SCRIPT`)."""

from __future__ import annotations

from dataclasses import dataclass

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix

from jobs_common.arq_extension._keys import (
    ABORTS_KEY_PREFIX,
    BELL_LENGTH,
    HELD_KEY_PREFIX,
    PRIORITY_BAND_MS,
    aborts_key,
    arq_queue_name,
    held_key,
    limits_key,
    paused_key,
    queue_bell_key,
    tokens_key,
    worker_leases_key,
)
from jobs_common.arq_extension._scripts import CLAIM_SCRIPT

__all__ = ["Claimed", "DueJobClaimer"]


@dataclass(frozen=True)
class Claimed:
    """What one claim took: jobs to start (arq job id, its ready-set score: the due time in its
    priority's band, ``_keys.due_and_priority``), the ids of
    jobs this worker holds that were asked to abort since its last claim, and how long (ms) the
    worker may wait for its bells before anything unrung becomes claimable (None: no limit known:
    no later job, no other worker); and whether the queue limits its concurrent calls."""

    jobs: list[tuple[str, int]]
    aborts: list[str]
    wait_ms: int | None = None
    concurrency_limited: bool = False


class DueJobClaimer:
    """Claims due jobs of ``queue`` (a job's queue name) for one worker (``holder``); the
    script is registered once, then run by its SHA."""

    def __init__(self, redis: ArqRedis, queue: str, holder: str) -> None:
        self._script = redis.register_script(CLAIM_SCRIPT)
        self._keys = [
            arq_queue_name(queue),
            paused_key(queue),
            worker_leases_key(queue),
            held_key(holder),
            aborts_key(holder),
            queue_bell_key(queue),
            limits_key(queue),
            tokens_key(queue),
        ]
        self._holder = holder

    async def claim(self, now_ms: int, read_limit: int, wanted: int, in_progress_ms: int, lease_ms: int) -> Claimed:
        """Puts a lapsed worker's calls back, renews this worker's lease for ``lease_ms`` (on
        Redis's clock), takes its pending aborts, then takes up to ``wanted`` of the first
        ``read_limit`` jobs due by ``now_ms`` out of the queue (none while the queue is paused;
        fewer under its rate limits)."""
        flat, aborts, wait_ms, limited = await self._script(
            keys=self._keys,
            args=[
                now_ms,
                read_limit,
                wanted,
                in_progress_ms,
                in_progress_key_prefix,
                self._holder,
                lease_ms,
                HELD_KEY_PREFIX,
                ABORTS_KEY_PREFIX,
                BELL_LENGTH,
                PRIORITY_BAND_MS,
            ],
        )
        jobs = [(flat[i].decode(), int(float(flat[i + 1]))) for i in range(0, len(flat), 2)]
        aborting = [job_id.decode() for job_id in aborts]
        return Claimed(jobs, aborting, None if wait_ms < 0 else int(wait_ms), bool(limited))
