"""The api's reads and writes. Each write is one transaction; most are one statement."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import (
    DateTime,
    Executable,
    Select,
    String,
    Text,
    Update,
    Uuid,
    bindparam,
    cast,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, AsyncTransaction, async_sessionmaker
from sqlalchemy.orm import aliased

from jobs_common.db import CALL_COLUMNS, UNFINISHED_STATES, AttemptRow, Base, ExecutionRow, JobRow
from jobs_common.domain import (
    Deduplication,
    Execution,
    ExecutionState,
    Job,
    JobKind,
    JobSpec,
    JobState,
    JobView,
    Page,
    RequestKey,
    next_fire_time,
)
from jobs_common.errors import AlreadyExistsError, FailedPreconditionError, NotFoundError
from jobs_common.paging import (
    PagePosition,
    decode_page_token,
    encode_page_token,
    filter_fingerprint,
    page_within_budget,
)
from jobs_common.secrets import SecretBox, SecretsError
from jobs_common.store._json_rows import json_rows
from jobs_common.store._rows import (
    execution_from_row,
    job_from_row,
    job_spec_columns,
    schedule_from_row,
    scoped_flow,
    without_request,
)

__all__ = ["CreatedJob", "JobStore", "Replayed"]

_UNFINISHED = list(UNFINISHED_STATES)
_REPLAYABLE = (ExecutionState.DEAD.value, ExecutionState.CANCELLED.value)


@dataclass(frozen=True, slots=True)
class _NewJob:
    """A job ready to insert: the statement, its parameters, and the job it makes."""

    statement: Executable
    columns: dict[str, object]
    job: Job
    request: RequestKey | None
    tenant: str


@dataclass(frozen=True, slots=True)
class CreatedJob:
    job: Job
    # False when the request_id was seen before and ``job`` is the existing one.
    created: bool
    # A DEBOUNCE create that moved the existing job's pending execution: where it waited (its
    # queue, its flow key), to be moved in Redis too.
    moved_from: tuple[str, str | None] | None = None


@dataclass(frozen=True, slots=True)
class Replayed:
    execution: Execution
    queue: str
    # False when the execution was replayed before and ``execution`` is that earlier replay.
    created: bool = True


_LAST_EXECUTION = aliased(ExecutionRow)
# Jobs with their last execution (None for a job without one: outer join). Statements are built
# once: SQLAlchemy caches the compiled form of a statement, not the work of building it.
# The execution's copy of the job's request is never shown: not read.
_JOBS_WITH_LAST_EXECUTION: Select[JobRow, ExecutionRow] = (
    select(JobRow, _LAST_EXECUTION)
    .outerjoin(_LAST_EXECUTION, _LAST_EXECUTION.id == JobRow.last_execution_id)
    .options(*without_request(_LAST_EXECUTION))
)
# A job's size in a listing, from what is stored (a bytea's length is read without the value).
_BASIC_JOB_BYTES = (
    func.octet_length(JobRow.url)
    + func.octet_length(cast(JobRow.labels, Text))
    + func.coalesce(func.octet_length(JobRow.cron_expression), 0)
    + func.coalesce(func.octet_length(JobRow.time_zone), 0)
    + func.coalesce(func.octet_length(JobRow.schedule_error), 0)
    + func.coalesce(func.octet_length(_LAST_EXECUTION.last_error), 0)
)
_FULL_JOB_EXTRA_BYTES = (
    func.octet_length(JobRow.body)
    + func.octet_length(cast(JobRow.headers, Text))
    + func.coalesce(func.octet_length(JobRow.sealed_secrets), 0)
)
_JOBS = Base.metadata.tables[JobRow.__tablename__]
_EXECUTIONS = Base.metadata.tables[ExecutionRow.__tablename__]
_JOB_COLUMNS = tuple(c.name for c in _JOBS.columns)
_INSERT_JOB = (
    insert(_JOBS)
    .values({c.name: bindparam(c.name, type_=c.type) for c in _JOBS.columns})
    .on_conflict_do_nothing(index_elements=[_JOBS.c.tenant, _JOBS.c.request_id])
)
_NEW_JOB = _INSERT_JOB.returning(_JOBS.c.id, _JOBS.c.queue, *(_JOBS.c[name] for name in CALL_COLUMNS)).cte("new_job")
# A one-off job and its first execution (which copies the job's definition) in one statement; no
# row comes back for a repeated request_id.
_CREATE_ONE_OFF_JOB = (
    insert(_EXECUTIONS)
    .from_select(
        [
            "id",
            "job_id",
            "queue",
            *CALL_COLUMNS,
            "state",
            "trace_parent",
            "schedule_time",
            "create_time",
            "update_time",
        ],
        select(
            bindparam("execution_id", type_=Uuid),
            _NEW_JOB.c.id,
            _NEW_JOB.c.queue,
            *(_NEW_JOB.c[name] for name in CALL_COLUMNS),
            bindparam("execution_state", type_=String),
            bindparam("trace_parent", type_=String),
            bindparam("schedule_time", type_=DateTime(timezone=True)),
            bindparam("create_time", type_=DateTime(timezone=True)),
            bindparam("update_time", type_=DateTime(timezone=True)),
        ),
    )
    .add_cte(_NEW_JOB)
    .returning(_EXECUTIONS.c.job_id)
)
# A recurring job: its executions are made by the scheduler, tick by tick.
_CREATE_RECURRING_JOB = _INSERT_JOB.returning(_JOBS.c.id)
# Bodies up to this size share _CREATE_EACH (up to 100 of them: about 13 MiB of JSON); a larger
# one goes in a statement of its own.
_SHARED_BODY_MAX = 64 * 1024
# Many jobs, each as _CREATE_ONE_OFF_JOB / _CREATE_RECURRING_JOB make one, in one statement: the
# rows go in as JSON (a column a row leaves out is NULL), a repeated request_id inserts neither
# its job nor its execution, and the ids of the jobs inserted come back. An execution's row holds
# only what is its own; the definition it copies comes from its job's row, as in
# _CREATE_ONE_OFF_JOB (half the JSON to write and for PostgreSQL to read).
_CREATE_EACH = text(
    f"""
WITH new_jobs AS (
    INSERT INTO jobs SELECT * FROM jsonb_populate_recordset(NULL::jobs, CAST(:jobs AS jsonb))
    ON CONFLICT (tenant, request_id) DO NOTHING
    RETURNING *
), new_executions AS (
    INSERT INTO executions
        (id, job_id, queue, state, trace_parent, schedule_time, create_time, update_time, {", ".join(CALL_COLUMNS)})
    SELECT e.id, j.id, j.queue, e.state, e.trace_parent, e.schedule_time, j.create_time, j.update_time,
        {", ".join(f"j.{name}" for name in CALL_COLUMNS)}
    FROM jsonb_populate_recordset(NULL::executions, CAST(:executions AS jsonb)) AS e
    JOIN new_jobs AS j ON j.id = e.job_id
)
SELECT id FROM new_jobs
"""
)


# A create's de-duplication key, taken for its job unless another job holds it within its
# window: no row comes back then. A concurrent create with the key waits here for the other's
# commit (the row lock of ON CONFLICT), then sees its row.
_TAKE_DEDUPLICATION_KEY = text(
    """
INSERT INTO deduplications AS d (tenant, key, job_id, expire_time)
VALUES (:tenant, :key, :job_id, now() + make_interval(secs => CAST(:window_s AS double precision)))
ON CONFLICT (tenant, key) DO UPDATE SET job_id = excluded.job_id, expire_time = excluded.expire_time
WHERE d.expire_time <= now()
RETURNING job_id
"""
)
_DEDUPLICATION_HOLDER = text("SELECT job_id FROM deduplications WHERE tenant = :tenant AND key = :key")
_LOCK_DEDUPLICATION_HOLDER = text("SELECT job_id FROM deduplications WHERE tenant = :tenant AND key = :key FOR UPDATE")
_EXTEND_DEDUPLICATION_KEY = text(
    "UPDATE deduplications SET job_id = :job_id, expire_time = :expire_time WHERE tenant = :tenant AND key = :key"
)
# A DEBOUNCE create's pending execution: the holder's SCHEDULED one, locked, with where it waits.
_PENDING_EXECUTION = text(
    "SELECT id, queue, flow_key FROM executions WHERE job_id = :job_id AND state = 'SCHEDULED' FOR UPDATE"
)
_RELEASE_DEDUPLICATION_KEY = text(
    "DELETE FROM deduplications WHERE tenant = :tenant AND key = :key AND job_id <> :job_id"
)


class JobStore:
    """Every read and write is a tenant's: a job of another tenant, and its executions, are not
    found (NotFoundError, as if they did not exist)."""

    def __init__(self, engine: AsyncEngine, box: SecretBox) -> None:
        """``box`` seals the secrets of the jobs written and opens those of the jobs read."""
        self._box = box
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # Single-statement writes need no BEGIN/COMMIT round trips: a statement is atomic.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def create_jobs(
        self, tenant: str, requests: list[tuple[JobSpec, RequestKey | None]], trace_parent: str | None = None
    ) -> list[CreatedJob]:
        """Commits every job of ``requests`` in one transaction, or none: each as create_each
        does, a repeated request_id (also one repeated within the batch) returning the job it
        made first, and one that came with another request refusing the whole batch."""
        news = [self._new_job(tenant, spec, request, trace_parent) for spec, request in requests]
        earlier: list[uuid.UUID | None] = []
        async with self._engine.begin() as conn:
            for outcome in await _insert(conn, news):
                if isinstance(outcome, AlreadyExistsError):
                    raise outcome  # the transaction rolls back: none of the batch is kept
                earlier.append(outcome)
        return [await self._created(new, job_id) for new, job_id in zip(news, earlier, strict=True)]

    async def create_each(
        self, requests: Sequence[tuple[str, JobSpec, RequestKey | None, str | None]]
    ) -> list[CreatedJob | AlreadyExistsError]:
        """Commits each (tenant, spec, request key, traceparent) on its own, all in one statement
        (CreateJobs that arrive together): a one-off job with its execution (QUEUED, or SCHEDULED
        for a future run_at), a recurring one with its first fire time. One answer per request,
        in order: a repeated request_id answers the job it made first, and one that came before
        with another request an AlreadyExistsError, which holds back no other request."""
        news = [self._new_job(*request) for request in requests]
        async with self._autocommit.connect() as conn:
            outcomes = await _insert(conn, news)
        return [await self._answer(new, outcome) for new, outcome in zip(news, outcomes, strict=True)]

    async def create_deduplicated(
        self,
        tenant: str,
        spec: JobSpec,
        request: RequestKey | None,
        trace_parent: str | None,
        deduplication: Deduplication,
    ) -> CreatedJob | AlreadyExistsError:
        """Creates as create_each does, unless the tenant's ``deduplication.key`` answers a job
        still within its window: then nothing is made and that job is returned (created=False).
        The key is taken in the job's own transaction (concurrent creates with one key wait for
        each other: one makes the job); an expired key is taken over by the next create."""
        new = self._new_job(tenant, spec, request, trace_parent)
        params = _deduplication_params(tenant, deduplication, new)
        holder: uuid.UUID | None = None
        outcome: uuid.UUID | AlreadyExistsError | None = None
        async with self._engine.connect() as conn:  # one connection each: none waits for a second
            transaction = await conn.begin()
            taken = await conn.scalar(_TAKE_DEDUPLICATION_KEY, params) is not None
            if taken:
                outcome = await _insert_alone(conn, transaction, new)
            else:
                holder = await conn.scalar(_DEDUPLICATION_HOLDER, params)
                await transaction.rollback()
        if taken:
            return await self._answer(new, outcome)
        if holder is None:  # the key's row went meanwhile (purged): take it again
            return await self.create_deduplicated(tenant, spec, request, trace_parent, deduplication)
        async with self._sessions() as session:
            try:
                return CreatedJob(await self._get_job(session, tenant, holder), created=False)
            except NotFoundError:  # its job went (deleted and purged): the key is free again
                pass
        await self._release_deduplication_key(params)
        return await self.create_deduplicated(tenant, spec, request, trace_parent, deduplication)

    async def create_debounced(
        self,
        tenant: str,
        spec: JobSpec,
        request: RequestKey | None,
        trace_parent: str | None,
        deduplication: Deduplication,
    ) -> CreatedJob | AlreadyExistsError:
        """DEBOUNCE: a one-off job that runs ``deduplication.window`` after the last create of
        the tenant with its key, with that create's definition. The first create makes it,
        scheduled at the window's end; each later one within the window moves its pending
        execution to a window from now and gives it (and the job) the new definition, and
        answers the job (created=False, ``moved_from`` set). Once the job's execution has
        started (or the key expired), the next create makes a new job. Creates with one key
        wait for each other on the key's row."""
        now = datetime.now(UTC)
        due = now + deduplication.window
        spec = replace(spec, run_at=due)
        new = self._new_job(tenant, spec, request, trace_parent)
        params = {**_deduplication_params(tenant, deduplication, new), "expire_time": due}
        async with self._engine.connect() as conn:
            transaction = await conn.begin()
            taken = await conn.scalar(_TAKE_DEDUPLICATION_KEY, params) is not None
            holder = None if taken else await conn.scalar(_LOCK_DEDUPLICATION_HOLDER, params)
            if holder is None and not taken:  # its row went meanwhile (purged): take it again
                await transaction.rollback()
                return await self.create_debounced(tenant, spec, request, trace_parent, deduplication)
            pending = None if holder is None else (await conn.execute(_PENDING_EXECUTION, {"job_id": holder})).first()
            if pending is None:  # a new job: the key was free, or its job's run has started
                if not taken:
                    await conn.execute(_EXTEND_DEDUPLICATION_KEY, params)
                return await self._answer(new, await _insert_alone(conn, transaction, new))
            assert holder is not None
            flow_since = now if spec.flow_control is not None else None
            columns = {
                **job_spec_columns(spec, self._box, holder, tenant),
                "flow_since": flow_since,
                "update_time": now,
            }
            await conn.execute(update(_JOBS).where(_JOBS.c.id == holder).values(columns))
            await conn.execute(
                update(_EXECUTIONS)
                .where(_EXECUTIONS.c.id == pending.id)
                .values(
                    {
                        **{name: columns[name] for name in CALL_COLUMNS},
                        "queue": spec.queue,
                        "schedule_time": due,
                        "update_time": now,
                    }
                )
            )
            await conn.execute(_EXTEND_DEDUPLICATION_KEY, {**params, "job_id": holder})
            await transaction.commit()
        async with self._sessions() as session:
            job = await self._get_job(session, tenant, holder)
        return CreatedJob(job, created=False, moved_from=(pending.queue, pending.flow_key))

    async def _release_deduplication_key(self, params: dict[str, object]) -> None:
        async with self._autocommit.connect() as conn:
            await conn.execute(_RELEASE_DEDUPLICATION_KEY, params)

    def _new_job(self, tenant: str, spec: JobSpec, request: RequestKey | None, trace_parent: str | None) -> _NewJob:
        now = datetime.now(UTC)
        job_id, execution_id = uuid.uuid4(), uuid.uuid4()
        columns: dict[str, object] = {
            "id": job_id,
            "tenant": tenant,
            "request_id": request.id if request else None,
            "request_fingerprint": request.fingerprint if request else None,
            "state": JobState.ACTIVE.value,
            "create_time": now,
            "update_time": now,
            "next_run_time": None,
            "buffered_tick": None,
            "run_count": 0,
            "schedule_error": None,
            **job_spec_columns(spec, self._box, job_id, tenant),
            "flow_since": now if spec.flow_control is not None else None,
        }
        execution: Execution | None = None
        if spec.schedule is not None:
            first = next_fire_time(spec.schedule, now, anchor=now)
            columns.update(
                next_run_time=first,
                last_execution_id=None,
                state=(JobState.ACTIVE if first is not None else JobState.COMPLETED).value,
            )
            statement = _CREATE_RECURRING_JOB
        else:
            due = spec.run_at is None or spec.run_at <= now
            state = ExecutionState.QUEUED if due else ExecutionState.SCHEDULED
            schedule_time = now if due or spec.run_at is None else spec.run_at
            columns.update(
                last_execution_id=execution_id,
                execution_id=execution_id,
                execution_state=state.value,
                trace_parent=trace_parent,
                schedule_time=schedule_time,
            )
            statement = _CREATE_ONE_OFF_JOB
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
                priority=spec.priority,
                flow=scoped_flow(spec.flow_control, tenant),
                flow_since=columns["flow_since"],  # type: ignore[arg-type]
            )
        job = Job(
            str(job_id),
            spec,
            JobState(str(columns["state"])),
            now,
            now,
            last_execution=execution,
            next_run_time=columns["next_run_time"],  # type: ignore[arg-type]
        )
        return _NewJob(statement, columns, job, request, tenant)

    async def _answer(
        self, new: _NewJob, outcome: uuid.UUID | AlreadyExistsError | None
    ) -> CreatedJob | AlreadyExistsError:
        """What a create of ``new`` answers, from its insert's outcome (see ``_insert``)."""
        return outcome if isinstance(outcome, AlreadyExistsError) else await self._created(new, outcome)

    async def _created(self, new: _NewJob, existing: uuid.UUID | None) -> CreatedJob:
        """The job ``new`` made, or the one its request_id made before (``existing``)."""
        if existing is None:
            return CreatedJob(new.job, created=True)
        async with self._sessions() as session:
            return CreatedJob(await self._get_job(session, new.tenant, existing), created=False)

    async def get_job(self, tenant: str, job_id: uuid.UUID) -> Job:
        async with self._sessions() as session:
            return await self._get_job(session, tenant, job_id)

    async def list_jobs(
        self,
        tenant: str,
        page_size: int,
        page_token: str,
        state: JobState | None,
        queue: str | None,
        labels: dict[str, str],
        kind: JobKind | None = None,
        last_execution_state: ExecutionState | None = None,
        view: JobView = JobView.BASIC,
    ) -> Page[Job]:
        """One page, newest first, ended early by the byte budget (PAGE_MAX_BYTES): the page is
        chosen from the stored sizes first, so rows past it are never read."""
        filters: dict[str, object] = {"state": state, "queue": queue, "labels": labels, "kind": kind}
        if last_execution_state is not None:  # only when set: page tokens made before stay valid
            filters["last_execution_state"] = last_execution_state
        fingerprint = filter_fingerprint(**filters)
        position = decode_page_token(page_token, fingerprint)
        size = _BASIC_JOB_BYTES + (_FULL_JOB_EXTRA_BYTES if view is JobView.FULL else 0)
        query = select(JobRow.id, JobRow.create_time, size.label("size")).outerjoin(
            _LAST_EXECUTION, _LAST_EXECUTION.id == JobRow.last_execution_id
        )
        query = query.where(JobRow.tenant == tenant)
        query = query.where(JobRow.state == state.value) if state else query.where(JobRow.state != "DELETED")
        if queue:
            query = query.where(JobRow.queue == queue)
        if labels:
            query = query.where(JobRow.labels.contains(labels))
        if kind is JobKind.ONE_OFF:
            query = query.where(JobRow.schedule_kind == "ONE_OFF")
        elif kind is JobKind.RECURRING:
            query = query.where(JobRow.schedule_kind != "ONE_OFF")
        if last_execution_state is not None:
            query = query.where(_LAST_EXECUTION.state == last_execution_state.value)
        if position:
            query = query.where(tuple_(JobRow.create_time, JobRow.id) < (position.create_time, position.id))
        query = query.order_by(JobRow.create_time.desc(), JobRow.id.desc()).limit(page_size + 1)
        async with self._sessions() as session:
            taken, more = page_within_budget((await session.execute(query)).all(), page_size, lambda key: int(key.size))
            rows: dict[uuid.UUID, tuple[JobRow, ExecutionRow | None]] = {}
            if taken:
                full = _JOBS_WITH_LAST_EXECUTION.where(JobRow.tenant == tenant, JobRow.id.in_([k.id for k in taken]))
                if view is JobView.BASIC:
                    full = full.options(*without_request(JobRow))
                rows = {job.id: (job, execution) for job, execution in (await session.execute(full)).all()}
        # A job deleted for good between the two reads is left out.
        basic = view is JobView.BASIC
        jobs = [job_from_row(*rows[k.id], self._box, basic=basic) for k in taken if k.id in rows]
        token = ""
        if more:
            last = taken[-1]
            token = encode_page_token(PagePosition(last.create_time, last.id), fingerprint)
        return Page(jobs, token)

    async def update_job(self, tenant: str, job_id: uuid.UUID, revise: Callable[[JobSpec], JobSpec]) -> Job:
        """Replaces the job's definition with ``revise(current definition)``, under the job's row lock.
        Executions already created keep the definition they have; a recurring job's next tick is
        recomputed from now when its schedule changed (a finished one whose new schedule has
        ticks left becomes ACTIVE again)."""
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            row = await session.scalar(_job_row(tenant, job_id).with_for_update())
            if row is None:
                raise NotFoundError(f"job {job_id} not found")
            if row.state == JobState.DELETED.value:
                raise FailedPreconditionError(f"job {job_id} is deleted", reason="JOB_DELETED")
            try:
                current = job_from_row(row, None, self._box, need_secrets=True)
            except SecretsError as error:
                raise FailedPreconditionError(
                    f"job {job_id}'s secret headers and signing secrets cannot be opened ({error}): an update would"
                    " lose them; give SECRETS_KEYS the key they were sealed with, or delete the job and create it"
                    " again",
                    reason="SECRETS_UNREADABLE",
                ) from None
            spec = revise(current.spec)
            for name, value in job_spec_columns(spec, self._box, job_id, tenant).items():
                setattr(row, name, value)
            rescheduled = spec.schedule is not None and spec.schedule != current.spec.schedule
            if spec.schedule is not None and rescheduled and row.state != JobState.PAUSED.value:
                row.next_run_time = next_fire_time(spec.schedule, now, anchor=row.create_time)
                row.state = (JobState.ACTIVE if row.next_run_time else JobState.COMPLETED).value
            row.update_time = now
            await session.flush()
            return await self._get_job(session, tenant, job_id)

    async def pause_job(self, tenant: str, job_id: uuid.UUID) -> Job:
        """Stops a recurring job's ticks; pausing a paused job changes nothing."""
        async with self._sessions.begin() as session:
            row = await self._recurring_for_update(session, tenant, job_id, "paused")
            if row.state == JobState.ACTIVE.value:
                row.state = JobState.PAUSED.value
                row.next_run_time = None
                row.update_time = datetime.now(UTC)
            elif row.state != JobState.PAUSED.value:
                raise FailedPreconditionError(f"job {job_id} is {row.state}", reason=f"JOB_{row.state}")
            await session.flush()
            return await self._get_job(session, tenant, job_id)

    async def resume_job(self, tenant: str, job_id: uuid.UUID) -> Job:
        """Restarts a paused job from its next tick after now; resuming an active job changes nothing."""
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            row = await self._recurring_for_update(session, tenant, job_id, "resumed")
            if row.state == JobState.PAUSED.value:
                try:
                    schedule = schedule_from_row(row)
                    assert schedule is not None
                    row.next_run_time = next_fire_time(schedule, now, anchor=row.create_time)
                except Exception as error:  # whatever the stored row holds: the client is told why
                    raise FailedPreconditionError(
                        f"job {job_id}'s schedule cannot be planned ({type(error).__name__}: {str(error)[:200]}):"
                        " fix it with UpdateJob first",
                        reason="SCHEDULE_UNPLANNABLE",
                    ) from None
                row.state = (JobState.ACTIVE if row.next_run_time else JobState.COMPLETED).value
                row.schedule_error = None
                row.update_time = now
            elif row.state != JobState.ACTIVE.value:
                raise FailedPreconditionError(f"job {job_id} is {row.state}", reason=f"JOB_{row.state}")
            await session.flush()
            return await self._get_job(session, tenant, job_id)

    async def _recurring_for_update(self, session: AsyncSession, tenant: str, job_id: uuid.UUID, verb: str) -> JobRow:
        row = await session.scalar(_job_row(tenant, job_id).with_for_update())
        if row is None:
            raise NotFoundError(f"job {job_id} not found")
        if row.schedule_kind == "ONE_OFF":
            raise FailedPreconditionError(
                f"job {job_id} is a one-off job; only recurring jobs can be {verb}", reason="JOB_NOT_RECURRING"
            )
        return row

    async def delete_job(self, tenant: str, job_id: uuid.UUID) -> tuple[Job, list[uuid.UUID]]:
        """Marks the job DELETED and cancels its unfinished executions; returns those ids."""
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            found = await session.scalar(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.tenant == tenant)
                .values(state=JobState.DELETED.value, update_time=now, next_run_time=None, buffered_tick=None)
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
            return await self._get_job(session, tenant, job_id), cancelled_ids

    async def get_execution(self, tenant: str, execution_id: uuid.UUID) -> Execution:
        async with self._sessions() as session:
            row = await session.scalar(_execution_row(tenant, execution_id))
            if row is None:
                raise NotFoundError(f"execution {execution_id} not found")
            attempts = await session.scalars(
                select(AttemptRow).where(AttemptRow.execution_id == execution_id).order_by(AttemptRow.number)
            )
            return execution_from_row(row, list(attempts))

    async def list_executions(self, tenant: str, job_id: uuid.UUID, page_size: int, page_token: str) -> Page[Execution]:
        """One page, newest first, ended early by the byte budget (PAGE_MAX_BYTES)."""
        fingerprint = filter_fingerprint(job_id=job_id)
        position = decode_page_token(page_token, fingerprint)
        query = select(ExecutionRow).where(ExecutionRow.job_id == job_id).options(*without_request(ExecutionRow))
        if position:
            query = query.where(tuple_(ExecutionRow.create_time, ExecutionRow.id) < (position.create_time, position.id))
        query = query.order_by(ExecutionRow.create_time.desc(), ExecutionRow.id.desc()).limit(page_size + 1)
        async with self._sessions() as session:
            if await session.scalar(_tenant_jobs(tenant).where(JobRow.id == job_id)) is None:
                raise NotFoundError(f"job {job_id} not found")
            rows = list(await session.scalars(query))
        taken, more = page_within_budget(rows, page_size, lambda row: len(row.last_error.encode()))
        token = ""
        if more:
            last = taken[-1]
            token = encode_page_token(PagePosition(last.create_time, last.id), fingerprint)
        return Page([execution_from_row(r) for r in taken], token)

    async def cancel_execution(self, tenant: str, execution_id: uuid.UUID) -> Execution:
        """Moves an unfinished execution to CANCELLED (and its one-off job to COMPLETED)."""
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            row = await session.scalar(
                update(ExecutionRow)
                .where(
                    ExecutionRow.id == execution_id,
                    ExecutionRow.state.in_(_UNFINISHED),
                    ExecutionRow.job_id.in_(_tenant_jobs(tenant)),
                )
                .values(_cancelled_values(now, "cancelled by CancelExecution"))
                .returning(ExecutionRow)
            )
            if row is None:
                current = await session.scalar(_execution_row(tenant, execution_id))
                if current is None:
                    raise NotFoundError(f"execution {execution_id} not found")
                raise FailedPreconditionError(
                    f"execution {execution_id} is {current.state} and can no longer be cancelled",
                    reason="EXECUTION_FINISHED",
                )
            await session.execute(_complete_one_off_job(row.job_id, execution_id, now))
            return execution_from_row(row)

    async def replay_execution(
        self, tenant: str, execution_id: uuid.UUID, *, dead_only: bool = False, trace_parent: str | None = None
    ) -> Replayed:
        """Creates a QUEUED execution that replays a DEAD or CANCELLED one, once: an execution
        replayed before answers its existing replay (``created`` False), so a repeated call never
        calls the target twice. ``dead_only``: only a dead letter, a DEAD execution not replayed
        yet; a replayed one raises. The job's row lock serializes replays."""
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            found = (
                await session.execute(
                    select(ExecutionRow, JobRow)
                    .join(JobRow, JobRow.id == ExecutionRow.job_id)
                    .where(ExecutionRow.id == execution_id, JobRow.tenant == tenant)
                    .with_for_update(of=JobRow)
                )
            ).first()
            if found is None:
                raise NotFoundError(f"execution {execution_id} not found")
            old, job = found
            if old.state not in ((ExecutionState.DEAD.value,) if dead_only else _REPLAYABLE):
                raise FailedPreconditionError(
                    f"execution {execution_id} is {old.state}; only DEAD or CANCELLED executions can be replayed",
                    reason="EXECUTION_NOT_REPLAYABLE",
                )
            if job.state == JobState.DELETED.value:
                raise FailedPreconditionError(f"job {job.id} is deleted", reason="JOB_DELETED")
            earlier = await session.scalar(
                select(ExecutionRow).where(ExecutionRow.replay_of == old.id).order_by(ExecutionRow.create_time).limit(1)
            )
            if earlier is not None:
                if dead_only:
                    raise FailedPreconditionError(
                        f"execution {execution_id} was replayed already, as {earlier.id}",
                        reason="EXECUTION_ALREADY_REPLAYED",
                    )
                return Replayed(execution_from_row(earlier), job.queue, created=False)
            new = ExecutionRow(
                id=uuid.uuid4(),
                job_id=job.id,
                queue=job.queue,
                state=ExecutionState.QUEUED.value,
                attempt_count=0,
                interrupted_attempts=0,
                schedule_time=now,
                last_error="",
                replay_of=old.id,
                trace_parent=trace_parent,
                create_time=now,
                update_time=now,
                # A replay runs the job's current definition: fix the target, then replay.
                **{name: getattr(job, name) for name in CALL_COLUMNS},
            )
            session.add(new)
            await session.flush()
            if job.schedule_kind == "ONE_OFF":
                job.state = JobState.ACTIVE.value
            job.last_execution_id = new.id
            job.update_time = now
            return Replayed(execution_from_row(new), job.queue)

    async def ping(self) -> None:
        async with self._sessions() as session:
            await session.execute(text("SELECT 1"))

    async def _get_job(self, session: AsyncSession, tenant: str, job_id: uuid.UUID) -> Job:
        found = (
            await session.execute(_JOBS_WITH_LAST_EXECUTION.where(JobRow.id == job_id, JobRow.tenant == tenant))
        ).first()
        if found is None:
            raise NotFoundError(f"job {job_id} not found")
        return job_from_row(found[0], found[1], self._box)


def _job_row(tenant: str, job_id: uuid.UUID) -> Select[JobRow]:
    return select(JobRow).where(JobRow.id == job_id, JobRow.tenant == tenant)


def _tenant_jobs(tenant: str) -> Select[uuid.UUID]:
    """The ids of the tenant's jobs, for ``job_id IN (...)`` (one probe of a job per execution)."""
    return select(JobRow.id).where(JobRow.tenant == tenant)


def _execution_row(tenant: str, execution_id: uuid.UUID) -> Select[ExecutionRow]:
    """The execution if its job is the tenant's."""
    return select(ExecutionRow).where(ExecutionRow.id == execution_id, ExecutionRow.job_id.in_(_tenant_jobs(tenant)))


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
    """A one-off job ends with its last execution (a recurring one ends with its schedule)."""
    return (
        update(JobRow)
        .where(
            JobRow.id == job_id,
            JobRow.schedule_kind == "ONE_OFF",
            JobRow.state == JobState.ACTIVE.value,
            JobRow.last_execution_id == execution_id,
        )
        .values(state=JobState.COMPLETED.value, update_time=now)
    )


def _deduplication_params(tenant: str, deduplication: Deduplication, new: _NewJob) -> dict[str, object]:
    """The parameters of the statements on a create's de-duplication key, for ``new``'s job."""
    return {
        "tenant": tenant,
        "key": deduplication.key,
        "job_id": new.columns["id"],
        "window_s": deduplication.window.total_seconds(),
    }


async def _insert_alone(
    conn: AsyncConnection, transaction: AsyncTransaction, new: _NewJob
) -> uuid.UUID | AlreadyExistsError | None:
    """Inserts ``new`` in ``transaction`` and commits it; a repeated request_id (it answers)
    rolls back, so the de-duplication key stays as it was."""
    [outcome] = await _insert(conn, [new])
    if outcome is None:
        await transaction.commit()
    else:
        await transaction.rollback()
    return outcome


async def _insert(conn: AsyncConnection, news: list[_NewJob]) -> list[uuid.UUID | AlreadyExistsError | None]:
    """Inserts the jobs (and first executions) of ``news``, those with small bodies in one
    statement; per job: None when it was inserted, the id of the job its request_id made before,
    or an AlreadyExistsError when that request was another."""
    shared: list[_NewJob] = []
    alone: list[_NewJob] = []
    for new in news:
        (shared if len(new.job.spec.http_request.body) <= _SHARED_BODY_MAX else alone).append(new)
    inserted: set[object] = set()
    if shared:
        jobs = json_rows(_new_job_row(new) for new in shared)
        executions = json_rows(_first_execution(new) for new in shared if "execution_id" in new.columns)
        inserted |= set((await conn.execute(_CREATE_EACH, {"jobs": jobs, "executions": executions})).scalars())
    for new in alone:
        if await conn.scalar(new.statement, new.columns) is not None:
            inserted.add(new.columns["id"])
    outcomes: list[uuid.UUID | AlreadyExistsError | None] = []
    for new in news:
        if new.columns["id"] in inserted:
            outcomes.append(None)
            continue
        try:
            outcomes.append(await _earlier_job(conn, new))
        except AlreadyExistsError as error:
            outcomes.append(error)
    return outcomes


def _first_execution(new: _NewJob) -> dict[str, object]:
    """A new one-off job's first execution's own columns (_CREATE_EACH copies the rest from its
    job), as _CREATE_ONE_OFF_JOB writes them."""
    columns = new.columns
    row = {
        "id": columns["execution_id"],
        "job_id": columns["id"],
        "state": columns["execution_state"],
        "schedule_time": columns["schedule_time"],
    }
    if columns["trace_parent"] is not None:
        row["trace_parent"] = columns["trace_parent"]
    return row


def _new_job_row(new: _NewJob) -> dict[str, object]:
    """The jobs-table row of ``new`` for _CREATE_EACH, without its NULL columns (the JSON leaves
    them out: NULL either way)."""
    columns = new.columns
    return {name: value for name in _JOB_COLUMNS if (value := columns[name]) is not None}


async def _earlier_job(conn: AsyncConnection, new: _NewJob) -> uuid.UUID:
    """The job that ``new``'s request_id made before (only a repeated request_id inserts
    nothing), after checking it came with the same request."""
    assert new.request is not None
    earlier_id: uuid.UUID
    fingerprint: bytes | None
    earlier_id, fingerprint = (
        await conn.execute(
            select(_JOBS.c.id, _JOBS.c.request_fingerprint).where(
                _JOBS.c.tenant == new.tenant, _JOBS.c.request_id == new.request.id
            )
        )
    ).one()
    if fingerprint is not None and fingerprint != new.request.fingerprint:
        raise AlreadyExistsError(
            f"request_id {new.request.id} was used before with a different request, which created job"
            f" {earlier_id}; a retry must resend the same request, and a new job needs a new request_id",
            reason="REQUEST_ID_REUSED",
        )
    return earlier_id
