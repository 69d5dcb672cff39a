"""Dead letters: DEAD executions not replayed yet, newest first (partial indexes
``ix_executions_dead``, and ``ix_executions_dead_by_queue`` for one queue), filtered by queue (the
one the execution ran on), job, end time and the last attempt's error kind. Each list, replay and
purge is a tenant's: it sees only the dead letters of the tenant's jobs. The count per queue is
the fleet's (queues are shared)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from jobs_common.db import ExecutionRow
from jobs_common.domain import DeadLetterFilter, Execution, Page
from jobs_common.paging import (
    PagePosition,
    decode_page_token,
    encode_page_token,
    filter_fingerprint,
    page_within_budget,
)
from jobs_common.store._rows import execution_from_row, without_request

__all__ = ["DeadLetters"]

_MATCHING = """
e.state = 'DEAD'
-- A primary-key probe of the job per dead letter read.
AND EXISTS (SELECT 1 FROM jobs j WHERE j.id = e.job_id AND j.tenant = CAST(:tenant AS text))
AND NOT EXISTS (SELECT 1 FROM executions r WHERE r.replay_of = e.id)
AND (CAST(:queue AS text) IS NULL OR e.queue = CAST(:queue AS text))
AND (CAST(:job_id AS uuid) IS NULL OR e.job_id = CAST(:job_id AS uuid))
AND (CAST(:ended_after AS timestamptz) IS NULL OR e.end_time >= CAST(:ended_after AS timestamptz))
AND (CAST(:ended_before AS timestamptz) IS NULL OR e.end_time < CAST(:ended_before AS timestamptz))
AND (CAST(:error_kind AS text) IS NULL OR CAST(:error_kind AS text) = (
    -- A scalar subquery (one primary-key probe per dead letter read), not EXISTS: a semi-join
    -- lets PostgreSQL hash the whole attempts table.
    SELECT a.error_kind FROM attempts a WHERE a.execution_id = e.id AND a.number = e.attempt_count))
"""

# Dead letters per queue: the partial index ix_executions_dead_by_queue and a replay probe for
# each (the dead-letter set, not the history).
_COUNT_BY_QUEUE = text(
    """
SELECT e.queue, count(*) AS dead_letters
FROM executions e
WHERE e.state = 'DEAD' AND NOT EXISTS (SELECT 1 FROM executions r WHERE r.replay_of = e.id)
GROUP BY e.queue
"""
)

_PAGE = text(
    f"""
SELECT e.id, e.end_time, octet_length(e.last_error) AS size FROM executions e
WHERE {_MATCHING}
  AND (CAST(:after_time AS timestamptz) IS NULL
       OR (e.end_time, e.id) < (CAST(:after_time AS timestamptz), CAST(:after_id AS uuid)))
ORDER BY e.end_time DESC, e.id DESC
LIMIT :limit
"""
)

# Attempts first, then their executions, in one statement (the foreign key is checked at its end).
# A dead letter that is a replay takes the executions it replays with it (as the history purge
# does): left behind, the replayed one would count as a dead letter again. The count is of the
# dead letters asked for.
_PURGE = text(
    f"""
WITH RECURSIVE doomed AS (
    SELECT e.id, e.replay_of FROM executions e
    WHERE {_MATCHING}
    ORDER BY e.end_time, e.id
    LIMIT :limit
), replayed(id) AS (
    SELECT replay_of FROM doomed WHERE replay_of IS NOT NULL
    UNION
    SELECT e.replay_of FROM executions e JOIN replayed r ON e.id = r.id WHERE e.replay_of IS NOT NULL
), chain AS (
    SELECT id FROM doomed UNION SELECT id FROM replayed
), attempts_gone AS (
    DELETE FROM attempts WHERE execution_id IN (SELECT id FROM chain)
), gone AS (
    DELETE FROM executions WHERE id IN (SELECT id FROM chain) RETURNING id
)
SELECT count(*) FROM gone WHERE id IN (SELECT id FROM doomed)
"""
)


def _filter_params(tenant: str, matching: DeadLetterFilter) -> dict[str, Any]:
    """The statements' parameters for a tenant's filter."""
    return {
        "tenant": tenant,
        "queue": matching.queue,
        "job_id": matching.job_id,
        "ended_after": matching.ended_after,
        "ended_before": matching.ended_before,
        "error_kind": matching.error_kind.value if matching.error_kind else None,
    }


class DeadLetters:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def ids(self, tenant: str, matching: DeadLetterFilter, limit: int) -> list[uuid.UUID]:
        """Up to ``limit`` matching dead letters, newest first."""
        page = await self._page(tenant, matching, limit, None)
        return [row.id for row in page]

    async def page(self, tenant: str, matching: DeadLetterFilter, page_size: int, page_token: str) -> Page[Execution]:
        """One page, newest first, ended early by the byte budget (PAGE_MAX_BYTES)."""
        fingerprint = filter_fingerprint(**_filter_params(tenant, matching))
        position = decode_page_token(page_token, fingerprint)
        rows, more = page_within_budget(
            await self._page(tenant, matching, page_size + 1, position), page_size, lambda row: int(row.size)
        )
        async with self._sessions() as session:
            found = {
                r.id: r
                for r in await session.scalars(
                    select(ExecutionRow)
                    .where(ExecutionRow.id.in_([r.id for r in rows]))
                    .options(*without_request(ExecutionRow))
                )
            }
        items = [execution_from_row(found[r.id]) for r in rows if r.id in found]
        token = encode_page_token(PagePosition(rows[-1].end_time, rows[-1].id), fingerprint) if more else ""
        return Page(items, token)

    async def count_by_queue(self) -> dict[str, int]:
        """How many dead letters each queue has (queues without any are absent)."""
        async with self._engine.connect() as conn:
            return {row.queue: row.dead_letters for row in (await conn.execute(_COUNT_BY_QUEUE)).all()}

    async def purge(self, tenant: str, matching: DeadLetterFilter, limit: int) -> int:
        """Deletes up to ``limit`` matching dead letters (oldest first) with their attempts."""
        async with self._engine.connect() as conn:
            return int(await conn.scalar(_PURGE, {**_filter_params(tenant, matching), "limit": limit}) or 0)

    async def _page(self, tenant: str, matching: DeadLetterFilter, limit: int, after: PagePosition | None) -> list[Any]:
        params = {
            **_filter_params(tenant, matching),
            "after_time": after.create_time if after else None,
            "after_id": after.id if after else None,
            "limit": limit,
        }
        async with self._engine.connect() as conn:
            return list((await conn.execute(_PAGE, params)).all())
