"""tenants: every job belongs to one (its executions and dead letters through it); request_id is
unique within a tenant, and ListJobs pages a tenant's jobs newest first

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 20:30:00

Every job made before belongs to the tenant ``default``, which is the tenant of every API_TOKENS
entry written before tenants existed. Adding a column with a constant default rewrites no row;
the default is dropped after, so a write that forgets the tenant fails instead of landing in
``default``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("tenant", sa.String(63), nullable=False, server_default="default"))
    op.alter_column("jobs", "tenant", server_default=None)
    op.drop_constraint("uq_jobs_request_id", "jobs", type_="unique")
    op.create_unique_constraint("uq_jobs_tenant_request_id", "jobs", ["tenant", "request_id"])
    op.drop_index("ix_jobs_create_time_id", table_name="jobs")
    op.create_index(
        "ix_jobs_tenant_create_time_id", "jobs", ["tenant", sa.text("create_time DESC"), sa.text("id DESC")]
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_create_time_id", table_name="jobs")
    op.create_index("ix_jobs_create_time_id", "jobs", [sa.text("create_time DESC"), sa.text("id DESC")])
    op.drop_constraint("uq_jobs_tenant_request_id", "jobs", type_="unique")
    op.create_unique_constraint("uq_jobs_request_id", "jobs", ["request_id"])
    op.drop_column("jobs", "tenant")
