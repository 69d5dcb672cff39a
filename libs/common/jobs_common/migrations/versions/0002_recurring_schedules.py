"""recurring schedules; executions keep a copy of the definition they run

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 23:30:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNFINISHED = "state IN ('SCHEDULED', 'QUEUED', 'RUNNING', 'RETRY_SCHEDULED')"
_CALL_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("method", sa.String(length=16)),
    ("url", sa.Text()),
    ("headers", postgresql.JSONB(astext_type=sa.Text())),
    ("body", sa.LargeBinary()),
    ("timeout_ms", sa.Integer()),
    ("max_attempts", sa.Integer()),
    ("min_backoff_ms", sa.Integer()),
    ("max_backoff_ms", sa.Integer()),
    ("multiplier", sa.Double()),
    ("retry_status_codes", sa.ARRAY(sa.Integer())),
)


def upgrade() -> None:
    op.add_column("jobs", sa.Column("schedule_kind", sa.String(length=16), server_default="ONE_OFF", nullable=False))
    op.add_column("jobs", sa.Column("cron_expression", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("time_zone", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("interval_ms", sa.BigInteger(), nullable=True))
    op.add_column("jobs", sa.Column("overlap_policy", sa.String(length=16), server_default="SKIP", nullable=False))
    op.add_column(
        "jobs", sa.Column("catch_up_policy", sa.String(length=16), server_default="SKIP_MISSED", nullable=False)
    )
    op.add_column("jobs", sa.Column("catch_up_limit", sa.Integer(), server_default="1", nullable=False))
    op.add_column("jobs", sa.Column("start_time", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("end_time", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("max_runs", sa.Integer(), nullable=True))
    op.add_column("jobs", sa.Column("run_count", sa.Integer(), server_default="0", nullable=False))
    op.add_column("jobs", sa.Column("next_run_time", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("buffered_tick", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(
        op.f("ck_jobs_schedule_kind"), "jobs", "schedule_kind IN ('ONE_OFF', 'CRON', 'INTERVAL')"
    )
    op.create_index("ix_jobs_next_run_time", "jobs", ["next_run_time"], postgresql_where=sa.text("state = 'ACTIVE'"))
    op.create_index(
        "ix_jobs_buffered_tick", "jobs", ["buffered_tick"], postgresql_where=sa.text("buffered_tick IS NOT NULL")
    )

    # Executions copy the definition they run: existing ones take their job's.
    for name, type_ in _CALL_COLUMNS:
        op.add_column("executions", sa.Column(name, type_, nullable=True))
    names = [name for name, _ in _CALL_COLUMNS]
    op.execute(
        f"UPDATE executions e SET ({', '.join(names)}) = ({', '.join('j.' + n for n in names)}) "
        "FROM jobs j WHERE j.id = e.job_id"
    )
    for name, _ in _CALL_COLUMNS:
        op.alter_column("executions", name, nullable=False)
    op.add_column("executions", sa.Column("tick_time", sa.DateTime(timezone=True), nullable=True))
    op.create_unique_constraint(op.f("uq_executions_job_id_tick_time"), "executions", ["job_id", "tick_time"])
    op.drop_constraint(op.f("ck_executions_state"), "executions", type_="check")
    op.create_check_constraint(
        op.f("ck_executions_state"),
        "executions",
        "state IN ('SCHEDULED', 'QUEUED', 'RUNNING', 'RETRY_SCHEDULED', 'SUCCEEDED', 'DEAD', 'CANCELLED', 'SKIPPED')",
    )
    op.create_index("ix_executions_job_id_unfinished", "executions", ["job_id"], postgresql_where=sa.text(_UNFINISHED))


def downgrade() -> None:
    op.drop_index("ix_executions_job_id_unfinished", table_name="executions", postgresql_where=sa.text(_UNFINISHED))
    op.execute("DELETE FROM executions WHERE state = 'SKIPPED'")
    op.drop_constraint(op.f("ck_executions_state"), "executions", type_="check")
    op.create_check_constraint(
        op.f("ck_executions_state"),
        "executions",
        "state IN ('SCHEDULED', 'QUEUED', 'RUNNING', 'RETRY_SCHEDULED', 'SUCCEEDED', 'DEAD', 'CANCELLED')",
    )
    op.drop_constraint(op.f("uq_executions_job_id_tick_time"), "executions", type_="unique")
    op.drop_column("executions", "tick_time")
    for name, _ in reversed(_CALL_COLUMNS):
        op.drop_column("executions", name)
    op.drop_index("ix_jobs_buffered_tick", table_name="jobs", postgresql_where=sa.text("buffered_tick IS NOT NULL"))
    op.drop_index("ix_jobs_next_run_time", table_name="jobs", postgresql_where=sa.text("state = 'ACTIVE'"))
    op.drop_constraint(op.f("ck_jobs_schedule_kind"), "jobs", type_="check")
    for name in (
        "buffered_tick",
        "next_run_time",
        "run_count",
        "max_runs",
        "end_time",
        "start_time",
        "catch_up_limit",
        "catch_up_policy",
        "overlap_policy",
        "interval_ms",
        "time_zone",
        "cron_expression",
        "schedule_kind",
    ):
        op.drop_column("jobs", name)
