"""deduplications: a tenant's de-duplication keys (CreateJobRequest.deduplication) and the job
each answers until it expires

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02 07:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deduplications",
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "key", name="pk_deduplications"),
    )
    op.create_index("ix_deduplications_expire_time", "deduplications", ["expire_time"])


def downgrade() -> None:
    op.drop_index("ix_deduplications_expire_time", table_name="deduplications")
    op.drop_table("deduplications")
