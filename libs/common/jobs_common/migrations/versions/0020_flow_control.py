"""jobs and executions: Job.flow_control (a key, the calls of the key open at once and started a
second, and when the job that set them was created); an execution keeps its job's

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("jobs", "executions")


def upgrade() -> None:
    for table in _TABLES:
        op.add_column(table, sa.Column("flow_key", sa.Text(), nullable=True))
        op.add_column(
            table, sa.Column("flow_max_concurrent", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        op.add_column(table, sa.Column("flow_rate", sa.Double(), server_default=sa.text("0"), nullable=False))
        op.add_column(table, sa.Column("flow_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        for column in ("flow_since", "flow_rate", "flow_max_concurrent", "flow_key"):
            op.drop_column(table, column)
