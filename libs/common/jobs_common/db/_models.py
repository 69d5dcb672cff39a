"""The schema. Migrations (``jobs_common/migrations``) create it; these models describe it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "CALL_COLUMNS",
    "UNFINISHED_STATES",
    "AttemptRow",
    "Base",
    "CallDefinition",
    "ExecutionRow",
    "JobRow",
    "QueueSettingsRow",
    "WorkerLeaseRow",
]

_NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JOB_STATES = ("ACTIVE", "PAUSED", "COMPLETED", "DELETED")
SCHEDULE_KINDS = ("ONE_OFF", "CRON", "INTERVAL")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
OVERLAP_POLICIES = ("SKIP", "ALLOW", "BUFFER_ONE", "CANCEL_PREVIOUS")
CATCH_UP_POLICIES = ("SKIP_MISSED", "RUN_ALL")
# What a job's row may hold and still be read: every value the api accepts and more, none that
# Python cannot represent (a reader would fail on it, not the writer).
READABLE_INTERVAL_MS = "interval_ms IS NULL OR interval_ms BETWEEN 1 AND 3155760000000"  # 100 years
READABLE_TIMES = " AND ".join(
    f"({name} IS NULL OR {name} BETWEEN '0001-01-01 00:00:00+00' AND '9999-12-31 23:59:59.999999+00')"
    for name in ("run_at", "start_time", "end_time", "next_run_time", "buffered_tick")
)
EXECUTION_STATES = (
    "SCHEDULED",
    "QUEUED",
    "RUNNING",
    "RETRY_SCHEDULED",
    "SUCCEEDED",
    "DEAD",
    "CANCELLED",
    "SKIPPED",
)
UNFINISHED_STATES = ("SCHEDULED", "QUEUED", "RUNNING", "RETRY_SCHEDULED")
# Finished executions other than dead letters (DEAD has a retention of its own).
FINISHED_STATES = ("SUCCEEDED", "CANCELLED", "SKIPPED")
FINISHED_JOB_STATES = ("COMPLETED", "DELETED")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=_NAMING)


class CallDefinition:
    """What to call and how to retry: a job's current definition, and each execution's copy of
    the definition it was created with (so UpdateJob never changes an execution under way)."""

    method: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, str]] = mapped_column(JSONB)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    timeout_ms: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    min_backoff_ms: Mapped[int] = mapped_column(Integer)
    max_backoff_ms: Mapped[int] = mapped_column(Integer)
    multiplier: Mapped[float] = mapped_column(Double)
    retry_status_codes: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    follow_redirects: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # Secret header values and signing secrets, sealed (jobs_common.secrets); NULL: none.
    sealed_secrets: Mapped[str | None] = mapped_column(Text)
    # 0-9, higher claimed first among a queue's due executions.
    priority: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    # Job.flow_control: the key (NULL: none), its limits (0: none), and when the job that set them
    # was created (an execution keeps its job's; the latest job of a key sets the key's limits).
    flow_key: Mapped[str | None] = mapped_column(Text)
    flow_max_concurrent: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    flow_rate: Mapped[float] = mapped_column(Double, server_default=text("0"))
    flow_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


CALL_COLUMNS = tuple(CallDefinition.__annotations__)
PRIORITY_RANGE = "priority BETWEEN 0 AND 9"


class JobRow(CallDefinition, Base):
    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # Who owns the job (jobs_common.auth): its executions and dead letters are its tenant's too.
    tenant: Mapped[str] = mapped_column(String(63))
    # Unique within the tenant (__table_args__).
    request_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # SHA-256 of the create request that came with request_id (NULL before migration 0010).
    request_fingerprint: Mapped[bytes | None] = mapped_column(LargeBinary)
    run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    queue: Mapped[str] = mapped_column(String(63))
    labels: Mapped[dict[str, Any]] = mapped_column(JSONB)
    state: Mapped[str] = mapped_column(String(16))
    last_execution_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Recurring schedules (ONE_OFF jobs leave these at their defaults).
    schedule_kind: Mapped[str] = mapped_column(String(16), server_default="ONE_OFF")
    cron_expression: Mapped[str | None] = mapped_column(Text)
    time_zone: Mapped[str | None] = mapped_column(Text)
    interval_ms: Mapped[int | None] = mapped_column(BigInteger)
    overlap_policy: Mapped[str] = mapped_column(String(16), server_default="SKIP")
    catch_up_policy: Mapped[str] = mapped_column(String(16), server_default="SKIP_MISSED")
    catch_up_limit: Mapped[int] = mapped_column(Integer, server_default="1")
    start_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    end_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    max_runs: Mapped[int | None] = mapped_column(Integer)
    run_count: Mapped[int] = mapped_column(Integer, server_default="0")
    # The earliest tick not handled yet; NULL unless the job is ACTIVE and recurring.
    next_run_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # BUFFER_ONE: a tick waiting for the unfinished execution to end.
    buffered_tick: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Why the scheduler set the job aside (PAUSED): its stored schedule could not be planned.
    schedule_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(_in("state", JOB_STATES), name="state"),
        CheckConstraint(_in("schedule_kind", SCHEDULE_KINDS), name="schedule_kind"),
        CheckConstraint(_in("method", HTTP_METHODS), name="method"),
        CheckConstraint(_in("overlap_policy", OVERLAP_POLICIES), name="overlap_policy"),
        CheckConstraint(_in("catch_up_policy", CATCH_UP_POLICIES), name="catch_up_policy"),
        CheckConstraint(READABLE_INTERVAL_MS, name="readable_interval"),
        CheckConstraint(READABLE_TIMES, name="readable_times"),
        CheckConstraint(PRIORITY_RANGE, name="priority"),
        UniqueConstraint("tenant", "request_id"),
        # ListJobs pages a tenant's jobs newest first by (create_time, id).
        Index("ix_jobs_tenant_create_time_id", "tenant", text("create_time DESC"), text("id DESC")),
        Index("ix_jobs_labels", "labels", postgresql_using="gin"),
        # The scheduler reads only the next due jobs, whatever the table's size.
        Index("ix_jobs_next_run_time", "next_run_time", postgresql_where=text("state = 'ACTIVE'")),
        Index("ix_jobs_buffered_tick", "buffered_tick", postgresql_where=text("buffered_tick IS NOT NULL")),
        # Recurring jobs whose schedule ended while runs were unfinished: completed when they end.
        Index(
            "ix_jobs_schedule_ended",
            "id",
            postgresql_where=text(
                "state = 'ACTIVE' AND next_run_time IS NULL AND buffered_tick IS NULL AND schedule_kind <> 'ONE_OFF'"
            ),
        ),
        # ListQueues: the distinct queue names, by skipping through this index.
        Index("ix_jobs_queue", "queue"),
        # The history purge: jobs of a queue that are over, oldest change first.
        Index(
            "ix_jobs_finished",
            "queue",
            "update_time",
            "id",
            postgresql_where=text(_in("state", FINISHED_JOB_STATES)),
        ),
    )


class ExecutionRow(CallDefinition, Base):
    __tablename__ = "executions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id"))
    # The queue its job named when it was created: the history's retention is the queue's. (A
    # dispatch reads the job's queue, which UpdateJob can change.)
    queue: Mapped[str] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(16))
    # Attempts started (numbers them); interrupted ones (worker shutdown) do not use up retries.
    attempt_count: Mapped[int] = mapped_column(Integer, server_default="0")
    interrupted_attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    schedule_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The recurring schedule's tick this execution is for: at most one execution per tick.
    tick_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    start_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    end_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str] = mapped_column(Text, server_default="")
    # Deleting the execution replayed (retention, PurgeDeadLetters) leaves the replay unlinked.
    replay_of: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("executions.id", ondelete="SET NULL"))
    # The worker running it (worker_leases) and that worker's lease epoch; lease_expires_at is
    # the lease of executions claimed before leases were per worker (lease_epoch NULL).
    lease_owner: Mapped[str | None] = mapped_column(Text)
    lease_epoch: Mapped[int | None] = mapped_column(BigInteger)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # W3C traceparent of the RPC that created it (None for a scheduler tick): see jobs_common.tracing.
    trace_parent: Mapped[str | None] = mapped_column(Text)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(_in("state", EXECUTION_STATES), name="state"),
        CheckConstraint(PRIORITY_RANGE, name="priority"),
        UniqueConstraint("job_id", "tick_time"),
        Index("ix_executions_job_id_create_time", "job_id", text("create_time DESC"), text("id DESC")),
        # The reconciler's working set: unfinished executions by due time.
        Index(
            "ix_executions_unfinished",
            "state",
            "schedule_time",
            postgresql_where=text(_in("state", UNFINISHED_STATES)),
        ),
        # Overlap policies: a job's unfinished executions.
        Index("ix_executions_job_id_unfinished", "job_id", postgresql_where=text(_in("state", UNFINISHED_STATES))),
        # Dead letters, newest first; and whether one was replayed already.
        Index("ix_executions_dead", text("end_time DESC"), text("id DESC"), postgresql_where=text("state = 'DEAD'")),
        Index("ix_executions_replay_of", "replay_of", postgresql_where=text("replay_of IS NOT NULL")),
        # The history purge: finished executions and dead letters of a queue, oldest first.
        Index("ix_executions_finished", "queue", "end_time", postgresql_where=text(_in("state", FINISHED_STATES))),
        Index("ix_executions_dead_by_queue", "queue", "end_time", "id", postgresql_where=text("state = 'DEAD'")),
    )


class AttemptRow(Base):
    __tablename__ = "attempts"

    execution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    worker_id: Mapped[str] = mapped_column(Text)
    start_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    end_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    response_status_code: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[dict[str, str]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    response_body: Mapped[bytes] = mapped_column(LargeBinary, server_default=text("''::bytea"))
    response_body_truncated: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    error_kind: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str] = mapped_column(Text, server_default="")
    # The worker's lease was taken over before it recorded this result: the result is kept
    # here for the record and did not move the execution.
    superseded: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class WorkerLeaseRow(Base):
    """A worker process's lease: renewed by its heartbeat; the executions it runs are taken over
    once it lapses. ``epoch`` grows each time a process takes the same worker id (a restarted
    container keeps its host name and pid 1)."""

    __tablename__ = "worker_leases"

    worker_id: Mapped[str] = mapped_column(Text, primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WatchedJobRow(Base):
    """A job some WatchJob stream follows: the change-feed triggers NOTIFY only for these. Each
    api process keeps its own rows (``watcher``) and renews ``expires_at`` while it watches; a
    row whose process died stops counting once it expires, and is removed."""

    __tablename__ = "watched_jobs"

    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    watcher: Mapped[str] = mapped_column(Text, primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DeduplicationRow(Base):
    """A de-duplication key of a tenant (CreateJobRequest.deduplication) and the job it answers
    until ``expire_time``; an expired row is taken over by the next create with its key, and
    the history purge deletes those left."""

    __tablename__ = "deduplications"

    tenant: Mapped[str] = mapped_column(String(63), primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    expire_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_deduplications_expire_time", "expire_time"),)


class QueueSettingsRow(Base):
    """What is set on a queue itself: paused, its retention and its rate limits. A queue needs no row to exist."""

    __tablename__ = "queue_settings"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # How long finished executions and dead letters are kept, in seconds: NULL takes the
    # server's HISTORY_RETENTION / DEAD_LETTER_RETENTION, 0 keeps them for ever.
    history_retention_s: Mapped[int | None] = mapped_column(BigInteger)
    dead_letter_retention_s: Mapped[int | None] = mapped_column(BigInteger)
    pause_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Its rate limits (RateLimits in the API); 0: no limit.
    max_dispatches_per_second: Mapped[float] = mapped_column(Double, server_default=text("0"))
    max_burst_size: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_concurrent_dispatches: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))

    __table_args__ = (
        CheckConstraint("max_dispatches_per_second >= 0", name="max_dispatches_per_second"),
        CheckConstraint("max_burst_size >= 0", name="max_burst_size"),
        CheckConstraint("max_concurrent_dispatches >= 0", name="max_concurrent_dispatches"),
    )
