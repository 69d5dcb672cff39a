"""The api's reads and writes. Each write is one transaction; most are one statement."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Select,
    String,
    Update,
    Uuid,
    func,
    literal,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from jobs_common.db import AttemptRow, ExecutionRow, JobRow
from jobs_common.domain import (
    TERMINAL_EXECUTION_STATES,
    Execution,
    ExecutionState,
    Job,
    JobSpec,
    JobState,
    Page,
)
from jobs_common.errors import FailedPreconditionError, NotFoundError
from jobs_common.paging import PagePosition, decode_page_token, encode_page_token, filter_fingerprint
from jobs_common.store._rows import execution_from_row, job_from_row, job_spec_columns

__all__ = ["CreatedJob", "JobStore", "Replayed"]

_UNFINISHED = [s.value for s in ExecutionState if s not in TERMINAL_EXECUTION_STATES]
_REPLAYABLE = (ExecutionState.DEAD.value, ExecutionState.CANCELLED.value)


@dataclass(frozen=True, slots=True)
class CreatedJob:
    job: Job
    # False when the request_id was seen before and ``job`` is the existing one.
    created: bool


@dataclass(frozen=True, slots=True)
class Replayed:
    execution: Execution
    queue: str


class JobStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create_job(self, spec: JobSpec, request_id: uuid.UUID | None) -> CreatedJob:
        """Commits the job and its first execution (QUEUED, or SCHEDULED for a future run_at)."""
        now = datetime.now(UTC)
        job_id, execution_id = uuid.uuid4(), uuid.uuid4()
        due = spec.run_at is None or spec.run_at <= now
        new_job = (
            insert(JobRow)
            .values(
                id=job_id,
                request_id=request_id,
                state=JobState.ACTIVE.value,
                last_execution_id=execution_id,
                create_time=now,
                update_time=now,
                **job_spec_columns(spec),
            )
            .on_conflict_do_nothing(index_elements=[JobRow.request_id])
            .returning(JobRow.id)
            .cte("new_job")
        )
        new_execution = insert(ExecutionRow).from_select(
            ["id", "job_id", "state", "schedule_time", "create_time", "update_time"],
            select(
                _uuid(execution_id),
                new_job.c.id,
                _str(ExecutionState.QUEUED if due else ExecutionState.SCHEDULED),
                _time(now if due else spec.run_at),
                _time(now),
                _time(now),
            ),
        )
        async with self._sessions.begin() as session:
            await session.execute(new_execution.add_cte(new_job))
            if request_id is not None:
                existing = await session.scalar(select(JobRow.id).where(JobRow.request_id == request_id))
                if existing != job_id:
                    assert existing is not None
                    return CreatedJob(await self._get_job(session, existing), created=False)
            return CreatedJob(await self._get_job(session, job_id), created=True)

    async def get_job(self, job_id: uuid.UUID) -> Job:
        async with self._sessions() as session:
            return await self._get_job(session, job_id)

    async def list_jobs(
        self,
        page_size: int,
        page_token: str,
        state: JobState | None,
        queue: str | None,
        labels: dict[str, str],
    ) -> Page[Job]:
        fingerprint = filter_fingerprint(state=state, queue=queue, labels=labels)
        position = decode_page_token(page_token, fingerprint)
        query = _jobs_with_last_execution()
        query = query.where(JobRow.state == state.value) if state else query.where(JobRow.state != "DELETED")
        if queue:
            query = query.where(JobRow.queue == queue)
        if labels:
            query = query.where(JobRow.labels.contains(labels))
        if position:
            query = query.where(tuple_(JobRow.create_time, JobRow.id) < (position.create_time, position.id))
        query = query.order_by(JobRow.create_time.desc(), JobRow.id.desc()).limit(page_size + 1)
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        jobs = [job_from_row(job, execution) for job, execution in rows[:page_size]]
        token = ""
        if len(rows) > page_size:
            last = rows[page_size - 1][0]
            token = encode_page_token(PagePosition(last.create_time, last.id), fingerprint)
        return Page(jobs, token)

    async def delete_job(self, job_id: uuid.UUID) -> tuple[Job, list[uuid.UUID]]:
        """Marks the job DELETED and cancels its unfinished executions; returns those ids."""
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            found = await session.scalar(
                update(JobRow)
                .where(JobRow.id == job_id)
                .values(state=JobState.DELETED.value, update_time=now)
                .returning(JobRow.id)
            )
            if found is None:
                raise NotFoundError(f"job {job_id} not found")
            cancelled = await session.scalars(
                update(ExecutionRow)
                .where(ExecutionRow.job_id == job_id, ExecutionRow.state.in_(_UNFINISHED))
                .values(_cancelled_values(now, "job deleted"))
                .returning(ExecutionRow.id)
            )
            cancelled_ids = list(cancelled)
            return await self._get_job(session, job_id), cancelled_ids

    async def get_execution(self, execution_id: uuid.UUID) -> Execution:
        async with self._sessions() as session:
            row = await session.get(ExecutionRow, execution_id)
            if row is None:
                raise NotFoundError(f"execution {execution_id} not found")
            attempts = await session.scalars(
                select(AttemptRow).where(AttemptRow.execution_id == execution_id).order_by(AttemptRow.number)
            )
            return execution_from_row(row, list(attempts))

    async def list_executions(self, job_id: uuid.UUID, page_size: int, page_token: str) -> Page[Execution]:
        fingerprint = filter_fingerprint(job_id=job_id)
        position = decode_page_token(page_token, fingerprint)
        query = select(ExecutionRow).where(ExecutionRow.job_id == job_id)
        if position:
            query = query.where(tuple_(ExecutionRow.create_time, ExecutionRow.id) < (position.create_time, position.id))
        query = query.order_by(ExecutionRow.create_time.desc(), ExecutionRow.id.desc()).limit(page_size + 1)
        async with self._sessions() as session:
            if await session.scalar(select(JobRow.id).where(JobRow.id == job_id)) is None:
                raise NotFoundError(f"job {job_id} not found")
            rows = list(await session.scalars(query))
        token = ""
        if len(rows) > page_size:
            last = rows[page_size - 1]
            token = encode_page_token(PagePosition(last.create_time, last.id), fingerprint)
        return Page([execution_from_row(r) for r in rows[:page_size]], token)

    async def cancel_execution(self, execution_id: uuid.UUID) -> Execution:
        """Moves an unfinished execution to CANCELLED (and its one-off job to COMPLETED)."""
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            row = await session.scalar(
                update(ExecutionRow)
                .where(ExecutionRow.id == execution_id, ExecutionRow.state.in_(_UNFINISHED))
                .values(_cancelled_values(now, "cancelled by CancelExecution"))
                .returning(ExecutionRow)
            )
            if row is None:
                current = await session.get(ExecutionRow, execution_id)
                if current is None:
                    raise NotFoundError(f"execution {execution_id} not found")
                raise FailedPreconditionError(
                    f"execution {execution_id} is {current.state} and can no longer be cancelled",
                    reason="EXECUTION_FINISHED",
                )
            await session.execute(_complete_one_off_job(row.job_id, execution_id, now))
            return execution_from_row(row)

    async def replay_execution(self, execution_id: uuid.UUID) -> Replayed:
        """Creates a QUEUED execution that replays a DEAD or CANCELLED one."""
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            found = (
                await session.execute(
                    select(ExecutionRow, JobRow)
                    .join(JobRow, JobRow.id == ExecutionRow.job_id)
                    .where(ExecutionRow.id == execution_id)
                    .with_for_update(of=JobRow)
                )
            ).first()
            if found is None:
                raise NotFoundError(f"execution {execution_id} not found")
            old, job = found
            if old.state not in _REPLAYABLE:
                raise FailedPreconditionError(
                    f"execution {execution_id} is {old.state}; only DEAD or CANCELLED executions can be replayed",
                    reason="EXECUTION_NOT_REPLAYABLE",
                )
            if job.state == JobState.DELETED.value:
                raise FailedPreconditionError(f"job {job.id} is deleted", reason="JOB_DELETED")
            new = ExecutionRow(
                id=uuid.uuid4(),
                job_id=job.id,
                state=ExecutionState.QUEUED.value,
                attempt_count=0,
                interrupted_attempts=0,
                schedule_time=now,
                last_error="",
                replay_of=old.id,
                create_time=now,
                update_time=now,
            )
            session.add(new)
            await session.flush()
            job.state = JobState.ACTIVE.value
            job.last_execution_id = new.id
            job.update_time = now
            return Replayed(execution_from_row(new), job.queue)

    async def unfinished_execution(self, job_id: uuid.UUID) -> tuple[Execution, str] | None:
        """The job's last execution and queue while it is QUEUED or SCHEDULED (to dispatch again)."""
        async with self._sessions() as session:
            found = (
                await session.execute(
                    select(ExecutionRow, JobRow.queue)
                    .join(JobRow, JobRow.last_execution_id == ExecutionRow.id)
                    .where(
                        JobRow.id == job_id,
                        ExecutionRow.state.in_([ExecutionState.QUEUED.value, ExecutionState.SCHEDULED.value]),
                    )
                )
            ).first()
        return (execution_from_row(found[0]), found[1]) if found else None

    async def ping(self) -> None:
        async with self._sessions() as session:
            await session.execute(text("SELECT 1"))

    async def _get_job(self, session: AsyncSession, job_id: uuid.UUID) -> Job:
        found = (await session.execute(_jobs_with_last_execution().where(JobRow.id == job_id))).first()
        if found is None:
            raise NotFoundError(f"job {job_id} not found")
        return job_from_row(found[0], found[1])


def _jobs_with_last_execution() -> Select[JobRow, ExecutionRow]:
    """Jobs with their last execution (None where a job has none: outer join)."""
    last = aliased(ExecutionRow)
    return select(JobRow, last).outerjoin(last, last.id == JobRow.last_execution_id)


def _cancelled_values(now: datetime, reason: str) -> dict[str, object]:
    return {
        "state": ExecutionState.CANCELLED.value,
        "end_time": now,
        "update_time": now,
        "lease_owner": None,
        "lease_expires_at": None,
        "last_error": func.coalesce(func.nullif(ExecutionRow.last_error, ""), reason),
    }


def _complete_one_off_job(job_id: uuid.UUID, execution_id: uuid.UUID, now: datetime) -> Update:
    """Every job is one-off until recurring schedules exist: its last execution ending ends it."""
    return (
        update(JobRow)
        .where(
            JobRow.id == job_id,
            JobRow.state == JobState.ACTIVE.value,
            JobRow.last_execution_id == execution_id,
        )
        .values(state=JobState.COMPLETED.value, update_time=now)
    )


def _uuid(value: uuid.UUID) -> ColumnElement[uuid.UUID]:
    return literal(value, Uuid)


def _str(value: str) -> ColumnElement[str]:
    return literal(value, String)


def _time(value: datetime | None) -> ColumnElement[datetime]:
    return literal(value, DateTime(timezone=True))
