"""Queues in PostgreSQL: which exist (named by a job, or by settings), which are paused, their
retention and rate limits, and their figures: unfinished executions by state, how long the oldest due one has
waited, and the backlog. The figures read only unfinished executions (partial index
``ix_executions_unfinished``) and the queue each names, never the jobs, so their cost follows
the backlog, not the history (make plans: the same buffers at 100,000 and 10,000,000 executions)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs_common.domain import ExecutionState, QueueChange, QueueDepth, QueueInfo, RateLimits
from jobs_common.errors import NotFoundError

__all__ = ["QUEUE_OF_EXECUTION", "QueueStore"]

# The job's current queue of execution ``e``, looked up by primary key for each execution read: a
# scalar subquery is never turned into a join, so PostgreSQL cannot choose to hash the whole jobs
# table (one row per one-off job: it grows with the history). The reconciler dispatches there.
QUEUE_OF_EXECUTION = "(SELECT j.queue FROM jobs j WHERE j.id = e.job_id)"

# What a queue's settings row holds, read with each queue (NULL when it has no row).
_SETTINGS_NAMES = (
    "history_retention_s",
    "dead_letter_retention_s",
    "max_dispatches_per_second",
    "max_burst_size",
    "max_concurrent_dispatches",
)
_SETTINGS_COLUMNS = ", ".join(f"s.{name}" for name in _SETTINGS_NAMES)
_RETURNED_COLUMNS = ", ".join(_SETTINGS_NAMES)

# By the queue each execution was created on (``executions.queue``): the one it was dispatched to.
_DEPTH = text(
    """
SELECT e.queue, e.state, count(*) AS executions,
       extract(epoch FROM now() - min(e.schedule_time)
               FILTER (WHERE e.state <> 'RUNNING' AND e.schedule_time <= now())) AS oldest_ready_age
FROM executions e
WHERE e.state IN ('SCHEDULED', 'QUEUED', 'RUNNING', 'RETRY_SCHEDULED')
  AND (CAST(:queue AS text) IS NULL OR e.queue = CAST(:queue AS text))
GROUP BY e.queue, e.state
"""
)

# Every queue a job names (distinct values read by skipping through ix_jobs_queue, one index
# probe per queue, however many jobs there are), plus the ones only settings name.
_LIST = text(
    f"""
WITH RECURSIVE named(queue) AS (
    (SELECT queue FROM jobs ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM jobs j WHERE j.queue > named.queue ORDER BY j.queue LIMIT 1)
    FROM named WHERE named.queue IS NOT NULL
)
SELECT q.name, coalesce(s.paused, false) AS paused, s.pause_time, {_SETTINGS_COLUMNS}
FROM (SELECT queue AS name FROM named WHERE queue IS NOT NULL UNION SELECT name FROM queue_settings) q
LEFT JOIN queue_settings s ON s.name = q.name
ORDER BY q.name
"""
)

# One page of queues after a name (every queue from ''): the same skip scan, stopped once it has
# one more name than the page holds.
_PAGE = text(
    f"""
WITH RECURSIVE named(queue, n) AS (
    (SELECT queue, 1 FROM jobs WHERE queue > :after ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM jobs j WHERE j.queue > named.queue ORDER BY j.queue LIMIT 1), named.n + 1
    FROM named WHERE named.queue IS NOT NULL AND named.n <= :limit
)
SELECT q.name, coalesce(s.paused, false) AS paused, s.pause_time, {_SETTINGS_COLUMNS}
FROM (
    SELECT queue AS name FROM named WHERE queue IS NOT NULL
    UNION
    (SELECT name FROM queue_settings WHERE name > :after ORDER BY name LIMIT :limit + 1)
) q
LEFT JOIN queue_settings s ON s.name = q.name
ORDER BY q.name
LIMIT :limit + 1
"""
)

_GET = text(
    f"""
SELECT :name AS name, coalesce(s.paused, false) AS paused, s.pause_time, {_SETTINGS_COLUMNS}
FROM (SELECT 1) one LEFT JOIN queue_settings s ON s.name = :name
WHERE s.name IS NOT NULL OR EXISTS (SELECT 1 FROM jobs WHERE queue = :name)
"""
)

_SET_PAUSED = text(
    f"""
INSERT INTO queue_settings AS s (name, paused, pause_time, update_time)
VALUES (:name, :paused, CASE WHEN CAST(:paused AS boolean) THEN now() END, now())
ON CONFLICT (name) DO UPDATE
SET paused = excluded.paused,
    -- Pausing a paused queue keeps its pause time.
    pause_time = CASE WHEN excluded.paused THEN coalesce(s.pause_time, excluded.pause_time) END,
    update_time = now()
RETURNING name, paused, pause_time, {_RETURNED_COLUMNS}
"""
)

# Each retention is changed only when asked (:set_history, :set_dead_letters; NULL: the default),
# and each rate limit when asked (:set_rate, :set_burst, :set_concurrent).
_UPDATE = text(
    f"""
INSERT INTO queue_settings AS s (name, history_retention_s, dead_letter_retention_s, max_dispatches_per_second,
                                 max_burst_size, max_concurrent_dispatches, update_time)
VALUES (:name, :history_s, :dead_letters_s, :rate, :burst, :concurrent, now())
ON CONFLICT (name) DO UPDATE
SET history_retention_s = CASE WHEN :set_history THEN excluded.history_retention_s ELSE s.history_retention_s END,
    dead_letter_retention_s = CASE WHEN :set_dead_letters THEN excluded.dead_letter_retention_s
                                   ELSE s.dead_letter_retention_s END,
    max_dispatches_per_second = CASE WHEN :set_rate THEN excluded.max_dispatches_per_second
                                     ELSE s.max_dispatches_per_second END,
    max_burst_size = CASE WHEN :set_burst THEN excluded.max_burst_size ELSE s.max_burst_size END,
    max_concurrent_dispatches = CASE WHEN :set_concurrent THEN excluded.max_concurrent_dispatches
                                     ELSE s.max_concurrent_dispatches END,
    update_time = now()
RETURNING name, paused, pause_time, {_RETURNED_COLUMNS}
"""
)

_SETTINGS = text(
    "SELECT name, paused, max_dispatches_per_second, max_burst_size, max_concurrent_dispatches FROM queue_settings"
)

# Capped at the queue's max_concurrent_dispatches: no more of its calls may be open at once, so
# no more workers' worth of them is work a new worker could take.
# Each flow key counts at most its max_concurrent (the latest job's, as in Redis).
_BACKLOG = text(
    """
WITH per_key AS (
    SELECT CASE WHEN e.flow_key IS NULL THEN count(*)
                ELSE least(
                    count(*),
                    nullif((array_agg(e.flow_max_concurrent ORDER BY e.flow_since DESC NULLS LAST))[1], 0)
                )
           END AS n
    FROM executions e
    WHERE (e.state = 'RUNNING'
           OR (e.state IN ('SCHEDULED', 'QUEUED', 'RETRY_SCHEDULED')
               AND e.schedule_time <= now() + make_interval(secs => CAST(:due_within_s AS double precision))))
      AND e.queue = :queue
    GROUP BY e.flow_key
)
SELECT least(
    (SELECT sum(n) FROM per_key),
    (SELECT nullif(s.max_concurrent_dispatches, 0) FROM queue_settings s WHERE s.name = :queue)
)
"""
)


class QueueStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def backlog(self, queue: str, due_within: timedelta) -> int:
        """Executions of ``queue`` running, or waiting and due within ``due_within``: the work a
        worker fleet has in hand or soon will (what KEDA scales on), at most the queue's
        max_concurrent_dispatches and, for each flow key, its max_concurrent (what may run at
        once)."""
        async with self._engine.connect() as conn:
            count = await conn.scalar(_BACKLOG, {"queue": queue, "due_within_s": due_within.total_seconds()})
        return int(count or 0)

    async def page(self, after: str, page_size: int) -> tuple[list[QueueInfo], bool]:
        """Up to ``page_size`` queues named after ``after`` (``''``: from the first), by name, and
        whether more follow."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_PAGE, {"after": after, "limit": page_size})).all()
        return [_info(row) for row in rows[:page_size]], len(rows) > page_size

    async def all_queues(self) -> list[QueueInfo]:
        async with self._engine.connect() as conn:
            return [_info(row) for row in (await conn.execute(_LIST)).all()]

    async def get(self, name: str) -> QueueInfo:
        """NotFoundError unless a job names the queue or it has settings."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(_GET, {"name": name})).first()
        if row is None:
            raise NotFoundError(f"queue {name!r} not found: no job names it")
        return _info(row)

    async def set_paused(self, name: str, paused: bool) -> QueueInfo:
        async with self._engine.connect() as conn:
            row = (await conn.execute(_SET_PAUSED, {"name": name, "paused": paused})).one()
        return _info(row)

    async def update(self, name: str, changes: QueueChange) -> QueueInfo:
        """Sets the retentions ``changes`` names (None: back to the default) and the rate limits
        it names, creating the queue's settings if it has none."""
        limits = changes.rate_limits
        params = {
            "name": name,
            "set_history": changes.set_history,
            "history_s": _seconds(changes.history),
            "set_dead_letters": changes.set_dead_letters,
            "dead_letters_s": _seconds(changes.dead_letters),
            "set_rate": "max_dispatches_per_second" in changes.set_rate_limits,
            "set_burst": "max_burst_size" in changes.set_rate_limits,
            "set_concurrent": "max_concurrent_dispatches" in changes.set_rate_limits,
            "rate": limits.max_dispatches_per_second,
            "burst": limits.max_burst_size,
            "concurrent": limits.max_concurrent_dispatches,
        }
        async with self._engine.connect() as conn:
            row = (await conn.execute(_UPDATE, params)).one()
        return _info(row)

    async def flags_and_limits(self) -> tuple[dict[str, bool], dict[str, RateLimits]]:
        """Every queue with settings: paused or not, and its rate limits (what Redis mirrors; the
        rows are few: one per queue with settings)."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_SETTINGS)).all()
        return {row.name: row.paused for row in rows}, {row.name: _limits(row) for row in rows}

    async def depth(self, queue: str | None = None) -> list[QueueDepth]:
        """Every queue's unfinished executions by state, or only ``queue``'s."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_DEPTH, {"queue": queue})).all()
        return [_depth(row.queue, row) for row in rows]


def _info(row: Any) -> QueueInfo:
    return QueueInfo(
        row.name,
        row.paused,
        row.pause_time,
        None if row.history_retention_s is None else timedelta(seconds=row.history_retention_s),
        None if row.dead_letter_retention_s is None else timedelta(seconds=row.dead_letter_retention_s),
        _limits(row),
    )


def _limits(row: Any) -> RateLimits:
    return RateLimits(
        float(row.max_dispatches_per_second or 0), row.max_burst_size or 0, row.max_concurrent_dispatches or 0
    )


def _seconds(value: timedelta | None) -> int | None:
    return None if value is None else int(value.total_seconds())


def _depth(queue: str, row: Any) -> QueueDepth:
    age = row.oldest_ready_age
    return QueueDepth(queue, ExecutionState(row.state), row.executions, float(age) if age is not None else None)
