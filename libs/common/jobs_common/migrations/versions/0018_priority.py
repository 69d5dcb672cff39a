"""jobs and executions: a priority (0-9, higher claimed first among a queue's due executions);
an execution keeps its job's priority of when it was created

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("jobs", "executions")


def upgrade() -> None:
    for table in _TABLES:
        op.add_column(table, sa.Column("priority", sa.SmallInteger(), server_default=sa.text("0"), nullable=False))
        op.create_check_constraint(f"ck_{table}_priority", table, "priority BETWEEN 0 AND 9")


def downgrade() -> None:
    for table in _TABLES:
        op.drop_constraint(f"ck_{table}_priority", table, type_="check")
        op.drop_column(table, "priority")
