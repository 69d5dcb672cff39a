"""The reconciler's side of PostgreSQL: executions that should be in Redis and may not be.

Two kinds, chosen by state and age (never by id ranges):

* waiting (QUEUED, SCHEDULED, RETRY_SCHEDULED) and due for longer than the grace period: a
  worker should have started them; if arq does not hold them, Redis lost them (a flush, a
  restart without persistence, an enqueue that failed after the commit);
* RUNNING with an expired lease: the worker stopped heartbeating. If it died, arq's in-progress
  key lapses with it and arq redelivers the job by itself; the reconciler covers the case where
  Redis lost the job too.

One replica reconciles at a time (a transaction-scoped advisory lock held through the pass),
so two replicas never re-dispatch the same execution against each other's stale reads.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs_common.domain import FlowControl
from jobs_common.store._leases import LEASE_LAPSED
from jobs_common.store._queues import QUEUE_OF_EXECUTION
from jobs_common.store._rows import flow_from

__all__ = ["LostExecution", "Reconciliation"]

# pg_advisory lock key of the reconciler ("jobs-rec" as an int64).
RECONCILER_LOCK_KEY = 0x6A6F62732D726563

# Each execution's queue is a primary-key probe, so the pass reads what is unfinished and never
# the whole jobs table, which grows with the history.
_OVERDUE_WAITING = text(
    f"""
SELECT e.id, e.state, e.schedule_time, e.priority, e.flow_key, e.flow_max_concurrent, e.flow_rate, e.flow_since,
       {QUEUE_OF_EXECUTION} AS queue
FROM executions e
WHERE e.state IN ('QUEUED', 'SCHEDULED', 'RETRY_SCHEDULED')
  AND e.schedule_time <= now() - make_interval(secs => CAST(:grace_s AS double precision))
  AND (e.schedule_time, e.id) > (CAST(:after_time AS timestamptz), CAST(:after_id AS uuid))
ORDER BY e.schedule_time, e.id
LIMIT :limit
"""
)

_LEASE_EXPIRED = text(
    f"""
SELECT e.id, e.state, e.schedule_time, e.priority, e.flow_key, e.flow_max_concurrent, e.flow_rate, e.flow_since,
       {QUEUE_OF_EXECUTION} AS queue
FROM executions e
WHERE e.state = 'RUNNING' AND {LEASE_LAPSED}
ORDER BY e.update_time
LIMIT :limit
"""
)

_EPOCH_CURSOR = (datetime.fromisoformat("1970-01-01T00:00:00+00:00"), uuid.UUID(int=0))


@dataclass(frozen=True, slots=True)
class LostExecution:
    id: uuid.UUID
    queue: str
    schedule_time: datetime
    priority: int = 0
    flow: FlowControl | None = None
    flow_since: datetime | None = None


class Reconciliation:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._locking = engine
        # Where the scan of overdue waiting executions goes on from, so a backlog larger than
        # one batch is covered over several passes instead of re-reading its head.
        self._cursor = _EPOCH_CURSOR

    @contextlib.asynccontextmanager
    async def leadership(self) -> AsyncIterator[bool]:
        """True when this replica holds the reconciler lock for the duration of the block."""
        async with self._locking.connect() as conn, conn.begin():
            held = await conn.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": RECONCILER_LOCK_KEY})
            yield bool(held)

    async def find(self, grace: timedelta, limit: int) -> list[LostExecution]:
        after_time, after_id = self._cursor
        async with self._engine.connect() as conn:
            waiting = (
                await conn.execute(
                    _OVERDUE_WAITING,
                    {"grace_s": grace.total_seconds(), "after_time": after_time, "after_id": after_id, "limit": limit},
                )
            ).all()
            expired = (await conn.execute(_LEASE_EXPIRED, {"limit": limit})).all()
        self._cursor = (waiting[-1].schedule_time, waiting[-1].id) if len(waiting) == limit else _EPOCH_CURSOR
        return [
            LostExecution(r.id, r.queue, r.schedule_time, r.priority, flow_from(r), r.flow_since)
            for r in [*waiting, *expired]
        ]
