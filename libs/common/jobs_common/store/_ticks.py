"""The scheduler's side of PostgreSQL: turn due ticks of recurring jobs into executions.

Several api replicas may run the scheduler at once. Each pass locks the due jobs it takes with
``FOR UPDATE SKIP LOCKED`` and advances their ``next_run_time`` in the same transaction, so a
tick is taken by exactly one replica; the unique (job_id, tick_time) key backs that up. Due jobs
are read through the partial index on ``next_run_time``: a pass costs the same with ten jobs
stored or a million.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from jobs_common.db import CALL_COLUMNS, UNFINISHED_STATES, ExecutionRow, JobRow
from jobs_common.domain import (
    Execution,
    ExecutionState,
    JobState,
    OverlapPolicy,
    RecurringSchedule,
    TickPlan,
    plan_due_ticks,
)
from jobs_common.errors import FailedPreconditionError, NotFoundError
from jobs_common.store._rows import execution_from_row, schedule_from_row

__all__ = ["FiredTicks", "RunNow", "TickStore"]

logger = logging.getLogger(__name__)

# A schedule_error holds at most this much of the error (it is shown to clients).
_MAX_SCHEDULE_ERROR = 500


@dataclass(slots=True)
class FiredTicks:
    """What a pass committed and what to tell Redis after the commit."""

    # Jobs that had a due tick (a full batch means more may be due).
    jobs: int = 0
    # New QUEUED executions and their queue, to enqueue.
    queued: list[tuple[Execution, str]] = field(default_factory=list)
    skipped: int = 0
    buffered: int = 0
    missed: int = 0
    # Executions cancelled by CANCEL_PREVIOUS, to abort.
    cancelled: list[uuid.UUID] = field(default_factory=list)
    # Jobs whose stored schedule could not be planned: paused, with their schedule_error.
    set_aside: int = 0


@dataclass(frozen=True, slots=True)
class RunNow:
    """The result of RunJob: a new execution (QUEUED or SKIPPED), or a buffered run."""

    execution: Execution | None
    queue: str
    buffered: bool
    cancelled: list[uuid.UUID]


class TickStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def fire_due(self, now: datetime, batch_size: int) -> FiredTicks:
        """Fires the due ticks of up to ``batch_size`` jobs (and the buffered runs whose
        blocking execution ended); one transaction."""
        fired = FiredTicks()
        async with self._sessions.begin() as session:
            due = list(
                await session.scalars(
                    select(JobRow)
                    .where(JobRow.state == JobState.ACTIVE.value, JobRow.next_run_time <= now)
                    .order_by(JobRow.next_run_time)
                    .limit(batch_size)
                    .with_for_update(skip_locked=True)
                )
            )
            waiting = select(JobRow).where(JobRow.buffered_tick.is_not(None), JobRow.state == JobState.ACTIVE.value)
            if due:
                waiting = waiting.where(JobRow.id.not_in([j.id for j in due]))
            buffered = list(await session.scalars(waiting.limit(batch_size).with_for_update(skip_locked=True)))
            jobs = due + buffered
            if not jobs:
                return fired
            unfinished = await _unfinished_executions(session, [j.id for j in jobs])
            for job in jobs:
                firing = _JobFiring(job, unfinished[job.id], now)
                is_due = job.next_run_time is not None and job.next_run_time <= now
                if not is_due and firing.unfinished:
                    continue  # a buffered run still waiting for the unfinished execution
                try:
                    schedule, plan = _plan(job, now, is_due)
                except Exception as error:  # whatever one stored row holds, the others fire
                    _set_aside(job, error, now)
                    fired.set_aside += 1
                    continue
                if job.buffered_tick is not None and not firing.unfinished:
                    tick, job.buffered_tick = job.buffered_tick, None
                    firing.fire(tick)
                if plan is not None:
                    for tick in plan.due:
                        firing.tick(tick)
                    fired.missed += plan.missed
                    job.next_run_time = plan.next_run_time
                firing.add_to(session, fired, count_run=True)
                if schedule.max_runs is not None and job.run_count >= schedule.max_runs:
                    job.next_run_time = job.buffered_tick = None
                if job.next_run_time is None and job.buffered_tick is None and not firing.unfinished:
                    job.state = JobState.COMPLETED.value
                # Else the schedule has ended with runs unfinished: complete_ended_jobs ends the
                # job once they have.
                job.update_time = now
            fired.jobs = len(due)
            await _cancel(session, fired.cancelled, now)
        return fired

    async def complete_ended_jobs(self, now: datetime) -> int:
        """Completes the recurring jobs whose schedule has ended (end_time passed, max_runs
        reached) once their last runs have ended, so a COMPLETED job never has one running."""
        async with self._sessions.begin() as session:
            ended = await session.execute(
                update(JobRow)
                .where(
                    JobRow.state == JobState.ACTIVE.value,
                    JobRow.next_run_time.is_(None),
                    JobRow.buffered_tick.is_(None),
                    JobRow.schedule_kind != "ONE_OFF",
                    ~exists().where(ExecutionRow.job_id == JobRow.id, ExecutionRow.state.in_(UNFINISHED_STATES)),
                )
                .values(state=JobState.COMPLETED.value, update_time=now)
            )
            return int(ended.rowcount)  # type: ignore[attr-defined]

    async def run_now(self, tenant: str, job_id: uuid.UUID, trace_parent: str | None = None) -> RunNow:
        """RunJob: fires the tenant's recurring job now, outside its schedule, under its overlap policy."""
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            job = await session.scalar(
                select(JobRow).where(JobRow.id == job_id, JobRow.tenant == tenant).with_for_update()
            )
            if job is None:
                raise NotFoundError(f"job {job_id} not found")
            if job.schedule_kind == "ONE_OFF":
                raise FailedPreconditionError(
                    f"job {job_id} is a one-off job; RunJob runs recurring jobs (ReplayExecution re-runs an execution)",
                    reason="JOB_NOT_RECURRING",
                )
            if job.state in (JobState.DELETED.value, JobState.COMPLETED.value):
                raise FailedPreconditionError(f"job {job_id} is {job.state}", reason=f"JOB_{job.state}")
            unfinished = await _unfinished_executions(session, [job.id])
            firing = _JobFiring(job, unfinished[job.id], now, trace_parent)
            was_buffered = job.buffered_tick is not None
            firing.tick(None)
            job.update_time = now
            fired = FiredTicks()
            # A run outside the schedule: it does not count against max_runs.
            firing.add_to(session, fired, count_run=False)
            await _cancel(session, fired.cancelled, now)
            created = firing.created[-1] if firing.created else None
            return RunNow(
                execution=execution_from_row(created) if created is not None else None,
                queue=job.queue,
                buffered=created is None and not was_buffered and job.buffered_tick is not None,
                cancelled=fired.cancelled,
            )

    async def next_due_time(self) -> datetime | None:
        """The earliest next_run_time of an active job (one index probe)."""
        async with self._sessions() as session:
            return await session.scalar(
                select(func.min(JobRow.next_run_time)).where(JobRow.state == JobState.ACTIVE.value)
            )


def _plan(job: JobRow, now: datetime, is_due: bool) -> tuple[RecurringSchedule, TickPlan | None]:
    """The job's schedule and, when it is due, its ticks to fire: what a stored row that cannot
    be planned (a time zone or cron expression no longer understood, a time out of range, a
    value edited by hand) raises on, before anything of the job is changed."""
    schedule = schedule_from_row(job)
    if schedule is None:
        raise ValueError("a recurring job without a schedule")
    if not is_due or job.next_run_time is None:
        return schedule, None
    return schedule, plan_due_ticks(schedule, job.next_run_time, now, job.create_time, job.run_count)


def _set_aside(job: JobRow, error: Exception, now: datetime) -> None:
    """Pauses a job whose schedule cannot be planned, saying why (ResumeJob clears it)."""
    reason = f"{type(error).__name__}: {error}"[:_MAX_SCHEDULE_ERROR]
    logger.warning("scheduler: job %s set aside (paused), its stored schedule cannot be planned: %s", job.id, reason)
    job.state = JobState.PAUSED.value
    job.next_run_time = job.buffered_tick = None
    job.schedule_error = f"the scheduler paused this job, its schedule cannot be planned: {reason}"
    job.update_time = now


class _JobFiring:
    """The executions one pass creates for one locked job, under its overlap policy."""

    def __init__(
        self, job: JobRow, unfinished: list[uuid.UUID], now: datetime, trace_parent: str | None = None
    ) -> None:
        self.job = job
        # Of the RunJob request; a tick's executions start traces of their own.
        self.trace_parent = trace_parent
        self.unfinished = list(unfinished)
        self.now = now
        self.created: list[ExecutionRow] = []
        self.cancelled: list[uuid.UUID] = []
        self.buffered = 0

    def tick(self, tick: datetime | None) -> None:
        """One tick (None: a RunJob request) while ``unfinished`` are still going."""
        policy = OverlapPolicy(self.job.overlap_policy)
        if not self.unfinished or policy is OverlapPolicy.ALLOW:
            self.fire(tick)
        elif policy is OverlapPolicy.CANCEL_PREVIOUS:
            self.cancelled.extend(self.unfinished)
            self.unfinished.clear()
            self.fire(tick)
        elif policy is OverlapPolicy.BUFFER_ONE and self.job.buffered_tick is None:
            self.job.buffered_tick = tick or self.now
            self.buffered += 1
        else:
            reason = "a run is already buffered" if policy is OverlapPolicy.BUFFER_ONE else "overlap policy SKIP"
            self._record(
                tick, ExecutionState.SKIPPED, f"skipped: execution {self.unfinished[-1]} is unfinished ({reason})"
            )

    def fire(self, tick: datetime | None) -> None:
        execution = self._record(tick, ExecutionState.QUEUED, "")
        self.unfinished.append(execution.id)
        self.job.last_execution_id = execution.id

    def _record(self, tick: datetime | None, state: ExecutionState, error: str) -> ExecutionRow:
        terminal = state is ExecutionState.SKIPPED
        row = ExecutionRow(
            id=uuid.uuid4(),
            job_id=self.job.id,
            queue=self.job.queue,
            state=state.value,
            attempt_count=0,
            interrupted_attempts=0,
            schedule_time=tick or self.now,
            tick_time=tick,
            end_time=self.now if terminal else None,
            last_error=error,
            trace_parent=self.trace_parent,
            create_time=self.now,
            update_time=self.now,
            **{name: getattr(self.job, name) for name in CALL_COLUMNS},
        )
        self.created.append(row)
        return row

    def add_to(self, session: AsyncSession, fired: FiredTicks, *, count_run: bool) -> None:
        session.add_all(self.created)
        runs = 0
        for row in self.created:
            if row.state == ExecutionState.QUEUED.value:
                fired.queued.append((execution_from_row(row), self.job.queue))
                runs += 1
            else:
                fired.skipped += 1
        if count_run:
            self.job.run_count += runs
        fired.buffered += self.buffered
        fired.cancelled.extend(self.cancelled)


async def _unfinished_executions(session: AsyncSession, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
    rows = await session.execute(
        select(ExecutionRow.job_id, ExecutionRow.id)
        .where(ExecutionRow.job_id.in_(job_ids), ExecutionRow.state.in_(UNFINISHED_STATES))
        .order_by(ExecutionRow.create_time)
    )
    found: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for job_id, execution_id in rows:
        found[job_id].append(execution_id)
    return found


async def _cancel(session: AsyncSession, execution_ids: list[uuid.UUID], now: datetime) -> None:
    if not execution_ids:
        return
    await session.execute(
        update(ExecutionRow)
        .where(ExecutionRow.id.in_(execution_ids), ExecutionRow.state.in_(UNFINISHED_STATES))
        .values(
            state=ExecutionState.CANCELLED.value,
            end_time=now,
            update_time=now,
            lease_owner=None,
            lease_expires_at=None,
            last_error="cancelled by a newer tick (overlap policy CANCEL_PREVIOUS)",
        )
    )
