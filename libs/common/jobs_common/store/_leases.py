"""The worker's side of PostgreSQL: claim an execution under a lease, then record the outcome.

Each is one statement (one round trip): data-modifying CTEs update the execution, its attempt and
its job together. Claims made at the same time share one statement (:class:`GroupCommit`): each
row is claimed under the same conditions as alone. Every write after the claim is fenced by
(state RUNNING, attempt number, lease owner): the attempt number is the fencing token. A worker
whose lease lapsed and was taken over cannot move the execution; its late result is kept on its
own attempt, marked superseded.

Liveness is per worker, not per call: each worker process holds one row of ``worker_leases``
(taken by :meth:`ExecutionLeases.join`, with a new epoch), its heartbeat renews that row for
WORKER_LEASE_TTL every WORKER_HEARTBEAT_INTERVAL (:meth:`ExecutionLeases.renew`: one row written,
however many calls it runs), and every execution it claims names (lease_owner, lease_epoch).
A RUNNING execution whose worker's lease lapsed may be claimed again, so a dead worker's
executions are free seconds after it died, whatever their timeout. Executions claimed before
leases were per worker (lease_epoch NULL) keep their own lease_expires_at.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from jobs_common.domain import TERMINAL_EXECUTION_STATES, AttemptResult, Claim, ExecutionState, NotClaimed
from jobs_common.group_commit import GroupCommit
from jobs_common.secrets import SecretBox, SecretsError
from jobs_common.store._rows import http_request_from, retry_policy_from

__all__ = ["CLAIMS_PER_STATEMENT", "LEASE_LAPSED", "ExecutionLeases"]

logger = logging.getLogger(__name__)

# Concurrent claims are written together (group commit), up to this many per statement; so are
# concurrent outcomes.
CLAIMS_PER_STATEMENT = 100

# Whether the worker lease of RUNNING execution ``e`` lapsed (its worker stopped renewing it).
LEASE_LAPSED = """CASE WHEN e.lease_epoch IS NULL THEN e.lease_expires_at < now()
     ELSE NOT EXISTS (SELECT 1 FROM worker_leases w
                      WHERE w.worker_id = e.lease_owner AND w.epoch = e.lease_epoch AND w.expires_at >= now())
END"""
# How long until it lapses (0 once it has).
_UNTIL_LEASE_LAPSES = """greatest(CASE WHEN e.lease_epoch IS NULL THEN e.lease_expires_at
     ELSE (SELECT w.expires_at FROM worker_leases w WHERE w.worker_id = e.lease_owner AND w.epoch = e.lease_epoch)
END - now(), interval '0')"""

# Whether execution ``e``'s queue is paused (QueueService.PauseQueue).
_QUEUE_PAUSED = (
    "EXISTS (SELECT 1 FROM jobs j JOIN queue_settings q ON q.name = j.queue WHERE j.id = e.job_id AND q.paused)"
)

_CLAIM = text(
    f"""
WITH claimed AS (
    UPDATE executions e
    SET state = 'RUNNING',
        attempt_count = e.attempt_count + 1,
        start_time = coalesce(e.start_time, now()),
        lease_owner = :worker_id,
        lease_epoch = :epoch,
        lease_expires_at = NULL,
        update_time = now()
    WHERE e.id = ANY(:execution_ids)
      AND e.schedule_time <= now()
      AND (e.state IN ('QUEUED', 'SCHEDULED', 'RETRY_SCHEDULED') OR (e.state = 'RUNNING' AND {LEASE_LAPSED})
           -- Claimed by this very process, whose answer it never got (the connection dropped
           -- after the commit): no delivery of it runs here (:held), so nothing ever would.
           OR (e.state = 'RUNNING' AND e.lease_owner = :worker_id AND e.lease_epoch = :epoch
               AND NOT (e.id = ANY(:held))))
      -- A paused queue starts nothing; PostgreSQL is the record of the pause, whatever Redis holds.
      AND NOT {_QUEUE_PAUSED}
    -- The definition the execution was created with (UpdateJob does not change it).
    RETURNING e.id, e.job_id, e.attempt_count, e.interrupted_attempts, e.create_time, e.trace_parent,
              extract(epoch FROM now() - e.schedule_time) AS due_for_s, e.method, e.url, e.headers, e.body,
              e.timeout_ms, e.max_attempts, e.min_backoff_ms, e.max_backoff_ms, e.multiplier,
              e.retry_status_codes, e.follow_redirects, e.sealed_secrets
), lost AS (
    -- An attempt left open by a worker whose lease lapsed: it died mid-call.
    UPDATE attempts a
    SET end_time = now(), error_kind = 'INTERRUPTED', error_message = 'worker lost: lease expired'
    FROM claimed
    WHERE a.execution_id = claimed.id AND a.end_time IS NULL
), attempt AS (
    INSERT INTO attempts (execution_id, number, worker_id, start_time)
    SELECT id, attempt_count, :worker_id, now() FROM claimed
)
SELECT * FROM claimed
"""
).bindparams(
    bindparam("execution_ids", type_=ARRAY(UUID(as_uuid=True))), bindparam("held", type_=ARRAY(UUID(as_uuid=True)))
)

_INSPECT = text(
    f"""
SELECT e.id, e.state, greatest(e.schedule_time - now(), interval '0') AS until_due,
       CASE WHEN e.state = 'RUNNING' THEN {_UNTIL_LEASE_LAPSES} END AS until_lease_expiry,
       {_QUEUE_PAUSED} AS paused
FROM executions e WHERE e.id = ANY(:execution_ids)
"""
).bindparams(bindparam("execution_ids", type_=ARRAY(UUID(as_uuid=True))))

# A new epoch for this worker id: whatever an earlier process of the same id held is lapsed.
_JOIN = text(
    """
INSERT INTO worker_leases (worker_id, epoch, expires_at)
VALUES (:worker_id, 1, now() + make_interval(secs => CAST(:lease_ttl_s AS double precision)))
ON CONFLICT (worker_id) DO UPDATE SET epoch = worker_leases.epoch + 1, expires_at = EXCLUDED.expires_at
RETURNING epoch
"""
)

# One row however many calls the worker runs; answers whether the lease had lapsed meanwhile.
_RENEW = text(
    """
UPDATE worker_leases w
SET expires_at = now() + make_interval(secs => CAST(:lease_ttl_s AS double precision))
FROM (SELECT expires_at FROM worker_leases WHERE worker_id = :worker_id AND epoch = :epoch) AS before
WHERE w.worker_id = :worker_id AND w.epoch = :epoch
RETURNING before.expires_at < now() AS lapsed
"""
)

# A worker that stops cleanly gives its lease up; rows of workers gone for a day, whose
# executions are all settled, are removed with it.
_LEAVE = text(
    """
DELETE FROM worker_leases w
WHERE (w.worker_id = :worker_id AND w.epoch = :epoch)
   OR (w.expires_at < now() - interval '1 day'
       AND NOT EXISTS (SELECT 1 FROM executions e WHERE e.state = 'RUNNING' AND e.lease_owner = w.worker_id))
"""
)

# The outcomes of a batch of attempts (group commit), one array per column: each row fenced and
# recorded as one statement would alone.
_FINISH = text(
    """
WITH input AS (
    SELECT * FROM unnest(
        CAST(:execution_ids AS uuid[]), CAST(:numbers AS integer[]), CAST(:states AS text[]),
        CAST(:retry_delays_s AS double precision[]), CAST(:terminals AS boolean[]),
        CAST(:status_codes AS integer[]), CAST(:response_headers AS text[]), CAST(:response_bodies AS bytea[]),
        CAST(:truncated AS boolean[]), CAST(:error_kinds AS text[]), CAST(:error_messages AS text[])
    ) AS i(execution_id, number, state, retry_delay_s, terminal, status_code, response_headers, response_body,
           truncated, error_kind, error_message)
), execution AS (
    UPDATE executions e
    SET state = i.state,
        schedule_time = coalesce(now() + make_interval(secs => i.retry_delay_s), e.schedule_time),
        end_time = CASE WHEN i.terminal THEN now() END,
        last_error = i.error_message,
        lease_owner = NULL, lease_epoch = NULL, lease_expires_at = NULL, update_time = now()
    FROM input i
    WHERE e.id = i.execution_id AND e.state = 'RUNNING' AND e.attempt_count = i.number
      AND e.lease_owner = :worker_id
    RETURNING e.id, e.job_id, i.number
), job AS (
    UPDATE jobs j SET state = 'COMPLETED', update_time = now()
    -- A one-off job ends with its execution; a recurring one with its schedule.
    FROM execution x JOIN input i ON i.execution_id = x.id AND i.number = x.number
    WHERE i.terminal AND j.id = x.job_id
      AND j.schedule_kind = 'ONE_OFF' AND j.state = 'ACTIVE' AND j.last_execution_id = x.id
), attempt AS (
    -- Recorded even when the lease was lost: then it is a superseded attempt, kept for the record.
    UPDATE attempts a
    SET end_time = now(), response_status_code = i.status_code, response_headers = CAST(i.response_headers AS jsonb),
        response_body = i.response_body, response_body_truncated = i.truncated,
        error_kind = i.error_kind, error_message = i.error_message,
        superseded = NOT EXISTS (SELECT 1 FROM execution x WHERE x.id = i.execution_id AND x.number = i.number)
    FROM input i
    WHERE a.execution_id = i.execution_id AND a.number = i.number
)
SELECT id, number FROM execution
"""
)

_RELEASE = text(
    """
WITH attempt AS (
    UPDATE attempts
    SET end_time = now(),
        error_kind = CASE WHEN (SELECT state FROM executions WHERE id = :execution_id) = 'CANCELLED'
                          THEN 'CANCELLED' ELSE 'INTERRUPTED' END,
        error_message = CASE WHEN (SELECT state FROM executions WHERE id = :execution_id) = 'CANCELLED'
                             THEN 'cancelled while running' ELSE :reason END
    WHERE execution_id = :execution_id AND number = :number AND end_time IS NULL
), execution AS (
    UPDATE executions
    SET state = 'QUEUED', interrupted_attempts = interrupted_attempts + 1,
        lease_owner = NULL, lease_epoch = NULL, lease_expires_at = NULL, update_time = now()
    WHERE id = :execution_id AND state = 'RUNNING' AND attempt_count = :number AND lease_owner = :worker_id
    RETURNING id
)
SELECT count(*) FROM execution
"""
)


class ExecutionLeases:
    def __init__(
        self,
        engine: AsyncEngine,
        worker_id: str,
        lease_ttl: timedelta,
        box: SecretBox,
        lease_engine: AsyncEngine | None = None,
    ) -> None:
        # Single statements in autocommit: one round trip each, no BEGIN/COMMIT.
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        # The worker lease's own connection (join, renew, leave): with thousands of calls opening
        # at once, claims queue for the pool for seconds, and a lease behind them would lapse.
        self._lease_engine = (lease_engine or engine).execution_options(isolation_level="AUTOCOMMIT")
        self.worker_id = worker_id
        self._box = box  # opens the sealed secrets of what is claimed
        self._lease_ttl_s = lease_ttl.total_seconds()
        self.epoch: int | None = None  # set by join()
        # What this process claimed and has not let go of (forget): a delivery of each runs here.
        # Claims are written one batch at a time, so a batch sees every claim made before it.
        self._held: set[uuid.UUID] = set()
        self._claims = GroupCommit(self._claim_many, CLAIMS_PER_STATEMENT, on_abandoned=self._abandoned)
        self._finishes = GroupCommit(self._finish_many, CLAIMS_PER_STATEMENT)
        self._releases: set[asyncio.Task[bool]] = set()

    async def join(self, engine: AsyncEngine | None = None) -> int:
        """Takes this worker's lease, with a new epoch; returns the epoch. ``engine``: one of the
        caller's (the lease keeper's thread has its own), instead of the lease's own."""
        async with self._lease_connection(engine) as conn:
            epoch = await conn.scalar(_JOIN, {"worker_id": self.worker_id, "lease_ttl_s": self._lease_ttl_s})
        self.epoch = int(epoch)
        return self.epoch

    async def renew(self, engine: AsyncEngine | None = None) -> bool:
        """Extends this worker's lease by WORKER_LEASE_TTL from now: one row, whatever it runs.
        Returns False when the lease had lapsed meanwhile (the worker stalled): its executions may
        have been taken over, and their late results will be kept as superseded attempts. A lease
        row that is gone (removed after a day) is taken again, with a new epoch. ``engine`` as
        for :meth:`join`."""
        async with self._lease_connection(engine) as conn:
            lapsed = await conn.scalar(
                _RENEW, {"worker_id": self.worker_id, "epoch": self.epoch, "lease_ttl_s": self._lease_ttl_s}
            )
        if lapsed is None:
            await self.join(engine)
            return False
        return not lapsed

    def _lease_connection(self, engine: AsyncEngine | None) -> AsyncConnection:
        chosen = self._lease_engine if engine is None else engine.execution_options(isolation_level="AUTOCOMMIT")
        return chosen.connect()

    async def leave(self) -> None:
        """Gives the lease up (a clean stop, once nothing runs)."""
        async with self._lease_engine.connect() as conn:
            await conn.execute(_LEAVE, {"worker_id": self.worker_id, "epoch": self.epoch})

    async def claim(self, execution_id: uuid.UUID) -> Claim | NotClaimed:
        """Takes the execution under this worker's lease, if it is due and free; claims made
        at the same time share one statement (:class:`GroupCommit`)."""
        return await self._claims.submit(execution_id)

    async def _claim_many(self, execution_ids: list[uuid.UUID]) -> list[Claim | NotClaimed]:
        """One statement claims them all; those it did not claim (and a second delivery of the
        same execution in the batch) are looked at by another, to say why."""
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    _CLAIM,
                    {
                        "execution_ids": execution_ids,
                        "worker_id": self.worker_id,
                        "epoch": self.epoch,
                        "held": list(self._held),
                    },
                )
            ).all()
            claimed = {row.id: row for row in rows}
            self._held.update(claimed)
            # The first delivery of each claimed execution has its row; the rest are looked at.
            taken = [claimed.pop(execution_id, None) for execution_id in execution_ids]
            unclaimed = [execution_id for execution_id, row in zip(execution_ids, taken, strict=True) if row is None]
            found = {}
            if unclaimed:
                found = {row.id: row for row in await conn.execute(_INSPECT, {"execution_ids": unclaimed})}
        return [
            _not_claimed(found.get(execution_id)) if row is None else self._claim_from(row)
            for execution_id, row in zip(execution_ids, taken, strict=True)
        ]

    def forget(self, execution_id: uuid.UUID) -> None:
        """The delivery that claimed the execution is over (recorded, released or given up): a
        later delivery may claim it again while this process's lease still covers it."""
        self._held.discard(execution_id)

    def _abandoned(self, execution_id: uuid.UUID, answer: Claim | NotClaimed) -> None:
        """A delivery cancelled (an abort, the worker stopping) while its claim was written:
        what it claimed is handed back (or ends as cancelled), not left to its lease."""
        if isinstance(answer, Claim):
            release = asyncio.get_running_loop().create_task(self._hand_back(answer))
            self._releases.add(release)
            release.add_done_callback(self._released)

    async def _hand_back(self, claim: Claim) -> bool:
        try:
            return await self.release(claim, "the delivery was cancelled before its call")
        finally:
            self.forget(claim.execution_id)

    def _released(self, release: asyncio.Task[bool]) -> None:
        self._releases.discard(release)
        if not release.cancelled() and release.exception() is not None:
            logger.warning("could not hand back an abandoned claim (%s); its lease will lapse", release.exception())

    def _claim_from(self, row: Row[Any]) -> Claim:
        try:
            request, problem = http_request_from(row, self._box, row.job_id), None
        except SecretsError as exc:
            request, problem = http_request_from(row, self._box, row.job_id, open_secrets=False), str(exc)
        return Claim(
            execution_id=row.id,
            job_id=row.job_id,
            number=row.attempt_count,
            counted_before=row.attempt_count - 1 - row.interrupted_attempts,
            request=request,
            timeout=timedelta(milliseconds=row.timeout_ms),
            retry_policy=retry_policy_from(row),
            due_for=timedelta(seconds=float(row.due_for_s)),
            create_time=row.create_time,
            trace_parent=row.trace_parent,
            secrets_problem=problem,
        )

    async def finish(self, claim: Claim, result: AttemptResult) -> bool:
        """Records the attempt and moves the execution; False when the lease was lost meanwhile
        (the attempt is still recorded, as superseded; the execution is left to whoever holds it).
        Outcomes recorded at the same time share one statement (:class:`GroupCommit`); this
        returns once theirs is committed."""
        return await self._finishes.submit((claim, result))

    async def _finish_many(self, outcomes: list[tuple[Claim, AttemptResult]]) -> list[bool]:
        moved: set[tuple[uuid.UUID, int]] = set()
        async with self._engine.connect() as conn:
            for batch in _without_repeats(outcomes):
                rows = await conn.execute(_FINISH, self._finish_parameters(batch))
                moved.update((row.id, row.number) for row in rows)
        return [(claim.execution_id, claim.number) in moved for claim, _ in outcomes]

    def _finish_parameters(self, batch: list[tuple[Claim, AttemptResult]]) -> dict[str, object]:
        return {
            "worker_id": self.worker_id,
            "execution_ids": [claim.execution_id for claim, _ in batch],
            "numbers": [claim.number for claim, _ in batch],
            "states": [result.state.value for _, result in batch],
            "retry_delays_s": [
                result.retry_delay.total_seconds() if result.retry_delay else None for _, result in batch
            ],
            "terminals": [result.state in TERMINAL_EXECUTION_STATES for _, result in batch],
            "status_codes": [result.status_code for _, result in batch],
            "response_headers": [json.dumps(result.response_headers or {}) for _, result in batch],
            "response_bodies": [result.response_body for _, result in batch],
            "truncated": [result.truncated for _, result in batch],
            "error_kinds": [result.error_kind.value if result.error_kind else None for _, result in batch],
            "error_messages": [result.error_message for _, result in batch],
        }

    async def release(self, claim: Claim, reason: str) -> bool:
        """Ends an attempt cut short by the worker stopping (or by a cancel) and, unless the
        execution was cancelled, hands it back as QUEUED without using up a retry."""
        async with self._engine.connect() as conn:
            moved = await conn.scalar(
                _RELEASE,
                {
                    "execution_id": claim.execution_id,
                    "number": claim.number,
                    "worker_id": self.worker_id,
                    "reason": reason,
                },
            )
        return bool(moved)


def _not_claimed(found: Row[Any] | None) -> NotClaimed:
    if found is None:
        return NotClaimed(None, timedelta(0), None)
    return NotClaimed(ExecutionState(found.state), found.until_due, found.until_lease_expiry, found.paused)


def _without_repeats(outcomes: list[tuple[Claim, AttemptResult]]) -> list[list[tuple[Claim, AttemptResult]]]:
    """The outcomes in batches that name each attempt once (one statement cannot update a row
    twice); in practice one batch, as an attempt has one outcome."""
    batches: list[list[tuple[Claim, AttemptResult]]] = []
    seen: list[set[tuple[uuid.UUID, int]]] = []
    for claim, result in outcomes:
        key = (claim.execution_id, claim.number)
        index = next((i for i, keys in enumerate(seen) if key not in keys), len(batches))
        if index == len(batches):
            batches.append([])
            seen.append(set())
        batches[index].append((claim, result))
        seen[index].add(key)
    return batches
