"""queue_settings: a queue's rate limits (Cloud Tasks' RateLimits): dispatches a second, the
token bucket's size, and the calls open at once across the fleet; 0 is no limit

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 06:50:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS: dict[str, sa.types.TypeEngine[Any]] = {
    "max_dispatches_per_second": sa.Double(),
    "max_burst_size": sa.Integer(),
    "max_concurrent_dispatches": sa.Integer(),
}


def upgrade() -> None:
    for name, type_ in _COLUMNS.items():
        op.add_column("queue_settings", sa.Column(name, type_, server_default=sa.text("0"), nullable=False))
        op.create_check_constraint(f"ck_queue_settings_{name}", "queue_settings", f"{name} >= 0")


def downgrade() -> None:
    for name in _COLUMNS:
        op.drop_constraint(f"ck_queue_settings_{name}", "queue_settings", type_="check")
        op.drop_column("queue_settings", name)
