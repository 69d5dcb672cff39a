"""initial schema: jobs, executions, attempts

Revision ID: 0001
Revises:
Create Date: 2026-11-27 20:55:07.377076
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=True),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("timeout_ms", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("min_backoff_ms", sa.Integer(), nullable=False),
        sa.Column("max_backoff_ms", sa.Integer(), nullable=False),
        sa.Column("multiplier", sa.Double(), nullable=False),
        sa.Column("retry_status_codes", sa.ARRAY(sa.Integer()), nullable=False),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queue", sa.String(length=63), nullable=False),
        sa.Column("labels", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("last_execution_id", sa.Uuid(), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("state IN ('ACTIVE', 'PAUSED', 'COMPLETED', 'DELETED')", name=op.f("ck_jobs_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("request_id", name=op.f("uq_jobs_request_id")),
    )
    op.create_index(
        "ix_jobs_create_time_id",
        "jobs",
        [sa.literal_column("create_time DESC"), sa.literal_column("id DESC")],
        unique=False,
    )
    op.create_index("ix_jobs_labels", "jobs", ["labels"], unique=False, postgresql_using="gin")
    op.create_table(
        "executions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempt_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("interrupted_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("schedule_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), server_default="", nullable=False),
        sa.Column("replay_of", sa.Uuid(), nullable=True),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('SCHEDULED', 'QUEUED', 'RUNNING', 'RETRY_SCHEDULED', 'SUCCEEDED', 'DEAD', 'CANCELLED')",
            name=op.f("ck_executions_state"),
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_executions_job_id_jobs")),
        sa.ForeignKeyConstraint(["replay_of"], ["executions.id"], name=op.f("fk_executions_replay_of_executions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_executions")),
    )
    op.create_index(
        "ix_executions_job_id_create_time",
        "executions",
        ["job_id", sa.literal_column("create_time DESC"), sa.literal_column("id DESC")],
        unique=False,
    )
    op.create_index(
        "ix_executions_unfinished",
        "executions",
        ["state", "schedule_time"],
        unique=False,
        postgresql_where=sa.text("state IN ('SCHEDULED', 'QUEUED', 'RUNNING', 'RETRY_SCHEDULED')"),
    )
    op.create_table(
        "attempts",
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.Text(), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("response_status_code", sa.Integer(), nullable=True),
        sa.Column(
            "response_headers",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("response_body", sa.LargeBinary(), server_default=sa.text("''::bytea"), nullable=False),
        sa.Column("response_body_truncated", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("error_kind", sa.String(length=32), nullable=True),
        sa.Column("error_message", sa.Text(), server_default="", nullable=False),
        sa.ForeignKeyConstraint(["execution_id"], ["executions.id"], name=op.f("fk_attempts_execution_id_executions")),
        sa.PrimaryKeyConstraint("execution_id", "number", name=op.f("pk_attempts")),
    )


def downgrade() -> None:
    op.drop_table("attempts")
    op.drop_index(
        "ix_executions_unfinished",
        table_name="executions",
        postgresql_where=sa.text("state IN ('SCHEDULED', 'QUEUED', 'RUNNING', 'RETRY_SCHEDULED')"),
    )
    op.drop_index("ix_executions_job_id_create_time", table_name="executions")
    op.drop_table("executions")
    op.drop_index("ix_jobs_labels", table_name="jobs", postgresql_using="gin")
    op.drop_index("ix_jobs_create_time_id", table_name="jobs")
    op.drop_table("jobs")
