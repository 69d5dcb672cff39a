"""The history purge: what is over and older than its queue's retention is deleted, in small
batches, each read from an index in the order it expires.

* Finished executions (SUCCEEDED, CANCELLED, SKIPPED; ``ix_executions_finished``) that ended
  before the queue's history cutoff, with their attempts (``ON DELETE CASCADE``). A dead letter
  that was replayed, and the one that replayed, go with the last replay of their chain: a dead
  letter never comes back because its replay was deleted.
* Dead letters (``ix_executions_dead_by_queue``) that ended before the dead-letter cutoff; a
  replay of one stays, unlinked (``ON DELETE SET NULL``).
* Jobs that are over (COMPLETED or DELETED) and have no execution left: the ones whose last
  executions a batch deleted, at once; the others (recurring jobs that never ran, jobs that
  ended after their history) by a sweep of ``ix_jobs_finished`` that remembers how far it got.

Deletes name their rows by ``= ANY(ARRAY(...))``, so each is a primary-key probe: joined to the
batch instead, PostgreSQL may choose to hash the whole table (seen at 100,000 executions).

Each batch is one transaction under a transaction-scoped advisory lock of its own: one replica
purges at a time, and a crash leaves either the whole batch or none of it. Rows another
transaction holds are skipped (``SKIP LOCKED``) and taken by a later batch.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from jobs_common.domain import KEEP_FOREVER, Retention

__all__ = ["HISTORY_PURGE_LOCK_KEY", "HistoryPurge", "PurgedBatch"]

# pg_advisory lock key of the history purge ("jobs-pur" as an int64).
HISTORY_PURGE_LOCK_KEY = 0x6A6F62732D707572

_PURGE_FINISHED = text(
    """
WITH RECURSIVE doomed AS (
    SELECT id, replay_of FROM executions
    WHERE queue = :queue AND state IN ('SUCCEEDED', 'CANCELLED', 'SKIPPED') AND end_time < :cutoff
    ORDER BY end_time
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
), replayed(id) AS (
    SELECT replay_of FROM doomed WHERE replay_of IS NOT NULL
    UNION
    SELECT e.replay_of FROM executions e JOIN replayed r ON e.id = r.id WHERE e.replay_of IS NOT NULL
), gone AS (
    DELETE FROM executions
    WHERE id = ANY(ARRAY(SELECT id FROM doomed UNION SELECT id FROM replayed))
    RETURNING job_id
)
SELECT job_id, count(*) AS executions FROM gone GROUP BY job_id
"""
)

_PURGE_DEAD_LETTERS = text(
    """
WITH doomed AS (
    SELECT id FROM executions
    WHERE queue = :queue AND state = 'DEAD' AND end_time < :cutoff
    ORDER BY end_time
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM executions WHERE id = ANY(ARRAY(SELECT id FROM doomed)) RETURNING job_id
)
SELECT job_id, count(*) AS executions FROM gone GROUP BY job_id
"""
)

# The jobs a batch took the last executions of (the NOT EXISTS sees the batch's deletes: it is
# the next statement of the same transaction).
_DELETE_EMPTIED_JOBS = text(
    """
DELETE FROM jobs j
WHERE j.id = ANY(CAST(:job_ids AS uuid[]))
  AND j.state IN ('COMPLETED', 'DELETED') AND j.update_time < :cutoff
  AND NOT EXISTS (SELECT 1 FROM executions e WHERE e.job_id = j.id)
"""
)

# The sweep goes on from (after_time, after_id); the conditions are checked again on the row
# deleted, which another transaction may have changed since the scan read it.
_SWEEP_JOBS = text(
    """
WITH scanned AS (
    SELECT id, update_time FROM jobs
    WHERE queue = :queue AND state IN ('COMPLETED', 'DELETED') AND update_time < :cutoff
      AND (update_time, id) > (CAST(:after_time AS timestamptz), CAST(:after_id AS uuid))
    ORDER BY update_time, id
    LIMIT :limit
), gone AS (
    DELETE FROM jobs j USING scanned s
    WHERE j.id = s.id AND j.state IN ('COMPLETED', 'DELETED') AND j.update_time < :cutoff
      AND NOT EXISTS (SELECT 1 FROM executions e WHERE e.job_id = j.id)
    RETURNING j.id
)
SELECT (SELECT count(*) FROM gone) AS deleted, (SELECT count(*) FROM scanned) AS scanned,
       last.update_time, last.id
FROM (SELECT 1) one
LEFT JOIN LATERAL (SELECT update_time, id FROM scanned ORDER BY update_time DESC, id DESC LIMIT 1) last ON true
"""
)

# Every queue some history names: distinct values read by skipping through each index.
_QUEUES = text(
    """
WITH RECURSIVE finished(queue) AS (
    (SELECT queue FROM executions WHERE state IN ('SUCCEEDED', 'CANCELLED', 'SKIPPED') ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT e.queue FROM executions e
            WHERE e.state IN ('SUCCEEDED', 'CANCELLED', 'SKIPPED') AND e.queue > f.queue ORDER BY e.queue LIMIT 1)
    FROM finished f WHERE f.queue IS NOT NULL
), dead(queue) AS (
    (SELECT queue FROM executions WHERE state = 'DEAD' ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT e.queue FROM executions e WHERE e.state = 'DEAD' AND e.queue > d.queue ORDER BY e.queue LIMIT 1)
    FROM dead d WHERE d.queue IS NOT NULL
), over(queue) AS (
    (SELECT queue FROM jobs WHERE state IN ('COMPLETED', 'DELETED') ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM jobs j
            WHERE j.state IN ('COMPLETED', 'DELETED') AND j.queue > o.queue ORDER BY j.queue LIMIT 1)
    FROM over o WHERE o.queue IS NOT NULL
)
SELECT queue FROM finished WHERE queue IS NOT NULL
UNION SELECT queue FROM dead WHERE queue IS NOT NULL
UNION SELECT queue FROM over WHERE queue IS NOT NULL
"""
)

_PURGE_DEDUPLICATIONS = text(
    """
DELETE FROM deduplications d
USING (SELECT tenant, key FROM deduplications WHERE expire_time < :now ORDER BY expire_time LIMIT :limit) old
WHERE d.tenant = old.tenant AND d.key = old.key AND d.expire_time < :now
"""
)

_EPOCH_CURSOR = (datetime.fromisoformat("1970-01-01T00:00:00+00:00"), uuid.UUID(int=0))


@dataclass(frozen=True, slots=True)
class PurgedBatch:
    """What one batch of one queue deleted; ``more``: a part of it was full, so more may be due."""

    executions: int = 0
    dead_letters: int = 0
    jobs: int = 0
    more: bool = False

    def __add__(self, other: PurgedBatch) -> PurgedBatch:
        """Both together: the counts summed; more if either had more."""
        return PurgedBatch(
            self.executions + other.executions,
            self.dead_letters + other.dead_letters,
            self.jobs + other.jobs,
            self.more or other.more,
        )


class HistoryPurge:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # Per queue, where the sweep of finished jobs goes on from.
        self._sweep_cursor: dict[str, tuple[datetime, uuid.UUID]] = {}

    async def expired_deduplications(self, now: datetime, limit: int) -> int | None:
        """Deletes up to ``limit`` de-duplication keys that expired before ``now`` (by their
        index); None when another replica holds the purge lock."""
        async with self._engine.connect() as conn, conn.begin():
            if not await conn.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": HISTORY_PURGE_LOCK_KEY}):
                return None
            result = await conn.execute(_PURGE_DEDUPLICATIONS, {"now": now, "limit": limit})
            return int(result.rowcount or 0)

    async def queues(self) -> list[str]:
        """Every queue with finished executions, dead letters or jobs that are over."""
        async with self._engine.connect() as conn:
            return sorted(row.queue for row in (await conn.execute(_QUEUES)).all())

    async def purge(self, queue: str, retention: Retention, now: datetime, limit: int) -> PurgedBatch | None:
        """Deletes up to ``limit`` of each kind of ``queue``'s history older than ``retention``
        at ``now``, in one transaction; None when another replica holds the purge lock."""
        async with self._engine.connect() as conn, conn.begin():
            if not await conn.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": HISTORY_PURGE_LOCK_KEY}):
                return None
            executions = dead = jobs = 0
            more = False
            cursor = None
            if retention.history != KEEP_FOREVER:
                cutoff = now - retention.history
                executions, emptied = await self._executions(conn, _PURGE_FINISHED, queue, cutoff, limit)
                jobs += await self._emptied_jobs(conn, emptied, cutoff)
                swept, scanned, cursor = await self._sweep(conn, queue, cutoff, limit)
                jobs += swept
                more = executions >= limit or scanned >= limit
            if retention.dead_letters != KEEP_FOREVER:
                cutoff = now - retention.dead_letters
                dead, emptied = await self._executions(conn, _PURGE_DEAD_LETTERS, queue, cutoff, limit)
                jobs += await self._emptied_jobs(conn, emptied, cutoff)
                more = more or dead >= limit
        if cursor is not None:  # committed: the sweep goes on from there
            self._sweep_cursor[queue] = cursor
        return PurgedBatch(executions, dead, jobs, more)

    @staticmethod
    async def _executions(
        conn: AsyncConnection, statement: Any, queue: str, cutoff: datetime, limit: int
    ) -> tuple[int, list[uuid.UUID]]:
        """(executions deleted, the jobs they belonged to)."""
        rows = (await conn.execute(statement, {"queue": queue, "cutoff": cutoff, "limit": limit})).all()
        return sum(row.executions for row in rows), [row.job_id for row in rows]

    @staticmethod
    async def _emptied_jobs(conn: AsyncConnection, job_ids: list[uuid.UUID], cutoff: datetime) -> int:
        if not job_ids:
            return 0
        result = await conn.execute(_DELETE_EMPTIED_JOBS, {"job_ids": job_ids, "cutoff": cutoff})
        return int(result.rowcount)

    async def _sweep(
        self, conn: AsyncConnection, queue: str, cutoff: datetime, limit: int
    ) -> tuple[int, int, tuple[datetime, uuid.UUID] | None]:
        """(jobs deleted, jobs scanned, the last one scanned) by one step of the sweep."""
        after_time, after_id = self._sweep_cursor.get(queue, _EPOCH_CURSOR)
        row = (
            await conn.execute(
                _SWEEP_JOBS,
                {"queue": queue, "cutoff": cutoff, "after_time": after_time, "after_id": after_id, "limit": limit},
            )
        ).one()
        last = None if row.id is None else (row.update_time, row.id)
        return int(row.deleted), int(row.scanned), last
