"""Which due jobs this worker starts, and which of its jobs it aborts, in one Redis round trip
(:data:`CLAIM_SCRIPT`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, retry_key_prefix

from jobs_common.arq_extension._keys import (
    ABORTS_KEY_PREFIX,
    BELL_LENGTH,
    HELD_KEY_PREFIX,
    PRIORITY_BAND_MS,
    aborts_key,
    arq_queue_name,
    flow_prefix,
    held_key,
    limits_key,
    paused_key,
    queue_bell_key,
    tokens_key,
    worker_leases_key,
)
from jobs_common.arq_extension._scripts import CLAIM_SCRIPT

__all__ = ["Claimed", "DueJobClaimer", "JobStart"]


class JobStart(NamedTuple):
    """What arq's run_job reads and writes first of a job, done by its claim: the job's payload
    (None: its job key is gone), its try (its retry counter, incremented) and whether it was
    asked to abort before it started (and no longer is)."""

    payload: bytes | None
    job_try: int
    aborted: bool


@dataclass(frozen=True)
class Claimed:
    """What one claim took: jobs to start (arq job id, its ready-set score: the due time in its
    priority's band, ``_keys.due_and_priority``), the ids of
    jobs this worker holds that were asked to abort since its last claim, and how long (ms) the
    worker may wait for its bells before anything unrung becomes claimable (None: no limit known:
    no later job, no other worker); whether the queue (or a flow key of a job it took) limits its
    concurrent calls; the flow key of each job taken that has one, and the start of each."""

    jobs: list[tuple[str, int]]
    aborts: list[str]
    wait_ms: int | None = None
    concurrency_limited: bool = False
    flow_keys: dict[str, str] = field(default_factory=dict)
    starts: dict[str, JobStart] = field(default_factory=dict)


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
            abort_jobs_ss,
        ]
        self._holder = holder
        self._flow_prefix = flow_prefix(queue)

    async def claim(self, now_ms: int, read_limit: int, wanted: int, in_progress_ms: int, lease_ms: int) -> Claimed:
        """Puts a lapsed worker's calls back, renews this worker's lease for ``lease_ms`` (on
        Redis's clock), takes its pending aborts, then takes up to ``wanted`` of the first
        ``read_limit`` jobs due by ``now_ms`` out of the queue (none while the queue is paused;
        fewer under its rate limits), each started as arq's run_job starts it."""
        flat, aborts, wait_ms, limited, started = await self._script(
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
                self._flow_prefix,
                job_key_prefix,
                retry_key_prefix,
            ],
        )
        jobs: list[tuple[str, int]] = []
        flow_keys: dict[str, str] = {}
        starts: dict[str, JobStart] = {}
        for i in range(0, len(flat), 2):
            job_id, (score, bar, key) = flat[i].decode(), flat[i + 1].decode().partition("|")
            jobs.append((job_id, int(float(score))))
            if bar:
                flow_keys[job_id] = key
            payload, job_try, aborted = started[i // 2 * 3 : i // 2 * 3 + 3]
            starts[job_id] = JobStart(payload or None, int(job_try), bool(aborted))
        aborting = [job_id.decode() for job_id in aborts]
        return Claimed(jobs, aborting, None if wait_ms < 0 else int(wait_ms), bool(limited), flow_keys, starts)
