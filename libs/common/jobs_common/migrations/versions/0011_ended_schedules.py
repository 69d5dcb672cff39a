"""jobs: an index of recurring jobs whose schedule ended while runs were unfinished

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENDED = "state = 'ACTIVE' AND next_run_time IS NULL AND buffered_tick IS NULL AND schedule_kind <> 'ONE_OFF'"


def upgrade() -> None:
    # The scheduler completes these once their last runs end; without it each pass read every job.
    op.create_index("ix_jobs_schedule_ended", "jobs", ["id"], postgresql_where=sa.text(ENDED))


def downgrade() -> None:
    op.drop_index("ix_jobs_schedule_ended", table_name="jobs")
