"""The api's reads and writes. Each write is one transaction; most are one statement."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    DateTime,
    Select,
    String,
    Update,
    Uuid,
    bindparam,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from jobs_common.db import AttemptRow, Base, ExecutionRow, JobRow
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


_LAST_EXECUTION = aliased(ExecutionRow)
# Jobs with their last execution (None for a job without one: outer join). Statements are built
# once: SQLAlchemy caches the compiled form of a statement, not the work of building it.
_JOBS_WITH_LAST_EXECUTION: Select[JobRow, ExecutionRow] = select(JobRow, _LAST_EXECUTION).outerjoin(
    _LAST_EXECUTION, _LAST_EXECUTION.id == JobRow.last_execution_id
)
_JOBS = Base.metadata.tables[JobRow.__tablename__]
_EXECUTIONS = Base.metadata.tables[ExecutionRow.__tablename__]
_NEW_JOB = (
    insert(_JOBS)
    .values({c.name: bindparam(c.name, type_=c.type) for c in _JOBS.columns})
    .on_conflict_do_nothing(index_elements=[_JOBS.c.request_id])
    .returning(_JOBS.c.id)
    .cte("new_job")
)
# The job and its first execution in one statement; no row comes back for a repeated request_id.
_CREATE_JOB = (
    insert(_EXECUTIONS)
    .from_select(
        ["id", "job_id", "state", "schedule_time", "create_time", "update_time"],
        select(
            bindparam("execution_id", type_=Uuid),
            _NEW_JOB.c.id,
            bindparam("execution_state", type_=String),
            bindparam("schedule_time", type_=DateTime(timezone=True)),
            bindparam("create_time", type_=DateTime(timezone=True)),
            bindparam("update_time", type_=DateTime(timezone=True)),
        ),
    )
    .add_cte(_NEW_JOB)
    .returning(_EXECUTIONS.c.job_id)
)


class JobStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # Single-statement writes need no BEGIN/COMMIT round trips: a statement is atomic.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def create_job(self, spec: JobSpec, request_id: uuid.UUID | None) -> CreatedJob:
        """Commits the job and its first execution (QUEUED, or SCHEDULED for a future run_at) in
        one statement. A repeated request_id returns the job created the first time."""
        now = datetime.now(UTC)
        job_id, execution_id = uuid.uuid4(), uuid.uuid4()
        due = spec.run_at is None or spec.run_at <= now
        state = ExecutionState.QUEUED if due else ExecutionState.SCHEDULED
        schedule_time = now if due or spec.run_at is None else spec.run_at
        async with self._autocommit.connect() as conn:
            inserted = await conn.scalar(
                _CREATE_JOB,
                {
                    "id": job_id,
                    "request_id": request_id,
                    "state": JobState.ACTIVE.value,
                    "last_execution_id": execution_id,
                    "create_time": now,
                    "update_time": now,
                    "execution_id": execution_id,
                    "execution_state": state.value,
                    "schedule_time": schedule_time,
                    **job_spec_columns(spec),
                },
            )
        if inserted is None:  # the request_id was used before
            assert request_id is not None
            async with self._sessions() as session:
                existing = await session.scalar(select(JobRow.id).where(JobRow.request_id == request_id))
                assert existing is not None
                return CreatedJob(await self._get_job(session, existing), created=False)
        execution = Execution(
            id=str(execution_id),
            job_id=str(job_id),
            state=state,
            attempt_count=0,
            schedule_time=schedule_time,
            start_time=None,
            end_time=None,
            last_error="",
            replay_of=None,
            create_time=now,
        )
        job = Job(str(job_id), spec, JobState.ACTIVE, now, now, last_execution=execution)
        return CreatedJob(job, created=True)

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
        query = _JOBS_WITH_LAST_EXECUTION
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

    async def ping(self) -> None:
        async with self._sessions() as session:
            await session.execute(text("SELECT 1"))

    async def _get_job(self, session: AsyncSession, job_id: uuid.UUID) -> Job:
        found = (await session.execute(_JOBS_WITH_LAST_EXECUTION.where(JobRow.id == job_id))).first()
        if found is None:
            raise NotFoundError(f"job {job_id} not found")
        return job_from_row(found[0], found[1])


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
