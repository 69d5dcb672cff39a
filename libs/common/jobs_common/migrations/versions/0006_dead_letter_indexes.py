"""dead letters: DEAD executions by end time, and replays by what they replay

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 01:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_executions_dead",
        "executions",
        [sa.text("end_time DESC"), sa.text("id DESC")],
        postgresql_where=sa.text("state = 'DEAD'"),
    )
    op.create_index(
        "ix_executions_replay_of", "executions", ["replay_of"], postgresql_where=sa.text("replay_of IS NOT NULL")
    )


def downgrade() -> None:
    op.drop_index("ix_executions_replay_of", table_name="executions")
    op.drop_index("ix_executions_dead", table_name="executions")
