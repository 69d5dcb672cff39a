"""jobs: why the scheduler set a recurring job aside (its stored schedule could not be planned),
and checks that refuse a row no reader could read (an unknown method or policy, an interval or
a time Python cannot represent)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 21:10:00

The api never wrote such values, so the checks hold for every row it made; one edited by hand
fails the upgrade, naming the check.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_TIMES = ("run_at", "start_time", "end_time", "next_run_time", "buffered_tick")
# Written out, not imported from the models: a migration stays what it was when it ran.
_CHECKS = {
    "method": "method IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS')",
    "overlap_policy": "overlap_policy IN ('SKIP', 'ALLOW', 'BUFFER_ONE', 'CANCEL_PREVIOUS')",
    "catch_up_policy": "catch_up_policy IN ('SKIP_MISSED', 'RUN_ALL')",
    "readable_interval": "interval_ms IS NULL OR interval_ms BETWEEN 1 AND 3155760000000",
    "readable_times": " AND ".join(
        f"({name} IS NULL OR {name} BETWEEN '0001-01-01 00:00:00+00' AND '9999-12-31 23:59:59.999999+00')"
        for name in _TIMES
    ),
}


def upgrade() -> None:
    op.add_column("jobs", sa.Column("schedule_error", sa.Text(), nullable=True))
    for name, condition in _CHECKS.items():
        op.create_check_constraint(f"ck_jobs_{name}", "jobs", sa.text(condition))


def downgrade() -> None:
    for name in reversed(_CHECKS):
        op.drop_constraint(f"ck_jobs_{name}", "jobs", type_="check")
    op.drop_column("jobs", "schedule_error")
