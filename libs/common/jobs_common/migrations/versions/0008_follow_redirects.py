"""jobs and executions: whether the call follows redirects

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default: PostgreSQL stores it in the catalogue and rewrites no row.
    for table in ("jobs", "executions"):
        op.add_column(table, sa.Column("follow_redirects", sa.Boolean(), server_default="false", nullable=False))


def downgrade() -> None:
    for table in ("jobs", "executions"):
        op.drop_column(table, "follow_redirects")
