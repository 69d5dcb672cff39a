"""jobs and executions: secret header values and signing secrets, sealed

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: nothing is rewritten. Headers stored in clear before this (Authorization...) are
    # still redacted on output; `python -m jobs_common.reseal` moves them under the key.
    for table in ("jobs", "executions"):
        op.add_column(table, sa.Column("sealed_secrets", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in ("jobs", "executions"):
        op.drop_column(table, "sealed_secrets")
