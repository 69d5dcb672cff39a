"""jobs: a digest of the create request that came with request_id

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: nothing is rewritten; a job created before this answers any repeat of its
    # request_id as it did (with the job), since there is nothing to compare with.
    op.add_column("jobs", sa.Column("request_fingerprint", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "request_fingerprint")
