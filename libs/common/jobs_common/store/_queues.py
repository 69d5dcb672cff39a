"""Per-queue figures read from PostgreSQL: how many unfinished executions each queue has, by
state, how long its oldest due one has waited, and its backlog. The queries read only unfinished
executions (partial index ``ix_executions_unfinished``), so their cost follows the backlog, not
the history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs_common.domain import ExecutionState

__all__ = ["QueueDepth", "QueueStats"]

_DEPTH = text(
    """
SELECT j.queue, e.state, count(*) AS executions,
       extract(epoch FROM now() - min(e.schedule_time)
               FILTER (WHERE e.state <> 'RUNNING' AND e.schedule_time <= now())) AS oldest_ready_age
FROM executions e JOIN jobs j ON j.id = e.job_id
WHERE e.state IN ('SCHEDULED', 'QUEUED', 'RUNNING', 'RETRY_SCHEDULED')
GROUP BY j.queue, e.state
"""
)

_BACKLOG = text(
    """
SELECT count(*) FROM executions e JOIN jobs j ON j.id = e.job_id
WHERE j.queue = :queue
  AND (e.state = 'RUNNING'
       OR (e.state IN ('SCHEDULED', 'QUEUED', 'RETRY_SCHEDULED')
           AND e.schedule_time <= now() + make_interval(secs => CAST(:due_within_s AS double precision))))
"""
)


@dataclass(frozen=True, slots=True)
class QueueDepth:
    queue: str
    state: ExecutionState
    count: int
    # Seconds the oldest due, waiting execution in this state has waited; None if none is due.
    oldest_ready_age: float | None


class QueueStats:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def backlog(self, queue: str, due_within: timedelta) -> int:
        """Executions of ``queue`` running, or waiting and due within ``due_within``: the work a
        worker fleet has in hand or soon will (what KEDA scales on)."""
        async with self._engine.connect() as conn:
            count = await conn.scalar(_BACKLOG, {"queue": queue, "due_within_s": due_within.total_seconds()})
        return int(count or 0)

    async def depth(self) -> list[QueueDepth]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_DEPTH)).all()
        return [
            QueueDepth(
                row.queue,
                ExecutionState(row.state),
                row.executions,
                float(row.oldest_ready_age) if row.oldest_ready_age is not None else None,
            )
            for row in rows
        ]
