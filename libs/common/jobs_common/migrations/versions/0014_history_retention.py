"""history retention: each execution names its queue, finished history is found by queue and
end time, deleting an execution takes its attempts and unlinks its replays, and a queue keeps
its own retention

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 18:00:00

The backfill rewrites every row of ``executions`` once (in one statement: on a large history,
run it in a maintenance window).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FINISHED = "state IN ('SUCCEEDED', 'CANCELLED', 'SKIPPED')"


def upgrade() -> None:
    op.add_column("executions", sa.Column("queue", sa.String(63), nullable=True))
    op.execute("UPDATE executions e SET queue = j.queue FROM jobs j WHERE j.id = e.job_id")
    op.alter_column("executions", "queue", nullable=False)
    op.create_index("ix_executions_finished", "executions", ["queue", "end_time"], postgresql_where=sa.text(_FINISHED))
    # With the id, counting a queue's dead letters (and checking each for a replay) reads only
    # the index: at 10,000,000 executions and 300,000 dead letters, PostgreSQL read the table.
    op.create_index(
        "ix_executions_dead_by_queue",
        "executions",
        ["queue", "end_time", "id"],
        postgresql_where=sa.text("state = 'DEAD'"),
    )
    op.create_index(
        "ix_jobs_finished",
        "jobs",
        ["queue", "update_time", "id"],
        postgresql_where=sa.text("state IN ('COMPLETED', 'DELETED')"),
    )
    op.drop_constraint("fk_attempts_execution_id_executions", "attempts", type_="foreignkey")
    op.create_foreign_key(
        "fk_attempts_execution_id_executions", "attempts", "executions", ["execution_id"], ["id"], ondelete="CASCADE"
    )
    op.drop_constraint("fk_executions_replay_of_executions", "executions", type_="foreignkey")
    op.create_foreign_key(
        "fk_executions_replay_of_executions", "executions", "executions", ["replay_of"], ["id"], ondelete="SET NULL"
    )
    op.add_column("queue_settings", sa.Column("history_retention_s", sa.BigInteger(), nullable=True))
    op.add_column("queue_settings", sa.Column("dead_letter_retention_s", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("queue_settings", "dead_letter_retention_s")
    op.drop_column("queue_settings", "history_retention_s")
    op.drop_constraint("fk_executions_replay_of_executions", "executions", type_="foreignkey")
    op.create_foreign_key("fk_executions_replay_of_executions", "executions", "executions", ["replay_of"], ["id"])
    op.drop_constraint("fk_attempts_execution_id_executions", "attempts", type_="foreignkey")
    op.create_foreign_key("fk_attempts_execution_id_executions", "attempts", "executions", ["execution_id"], ["id"])
    op.drop_index("ix_jobs_finished", table_name="jobs")
    op.drop_index("ix_executions_dead_by_queue", table_name="executions")
    op.drop_index("ix_executions_finished", table_name="executions")
    op.drop_column("executions", "queue")
