"""worker_leases: liveness per worker, not per call; executions name their worker's lease epoch

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 07:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # One row per worker process: its heartbeat renews expires_at, and every execution it runs
    # names (lease_owner, lease_epoch). A RUNNING execution is taken over once its worker's lease
    # lapsed. Executions claimed before this (lease_epoch NULL) keep their own lease_expires_at.
    op.create_table(
        "worker_leases",
        sa.Column("worker_id", sa.Text(), primary_key=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.add_column("executions", sa.Column("lease_epoch", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("executions", "lease_epoch")
    op.drop_table("worker_leases")
