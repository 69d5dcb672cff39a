"""watched_jobs: the change feed NOTIFYs only for jobs a WatchJob stream follows

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 16:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each execution and job state change ran a trigger that built a JSON payload and sent it with
# pg_notify, watched or not. Now the trigger first looks for an unexpired watcher of the job
# (a primary-key probe of a table that holds only the jobs being watched) and sends nothing
# when there is none.
_WATCHED = "EXISTS (SELECT 1 FROM watched_jobs w WHERE w.job_id = {job} AND w.expires_at > now())"

# The payloads, as migration 0004 sends them.
_EXECUTION_NOTIFY = """PERFORM pg_notify('job_events', json_build_object(
        'kind', 'execution', 'job_id', NEW.job_id, 'id', NEW.id, 'state', NEW.state,
        'attempt_count', NEW.attempt_count, 'schedule_time', NEW.schedule_time,
        'start_time', NEW.start_time, 'end_time', NEW.end_time, 'last_error', left(NEW.last_error, 1000),
        'replay_of', NEW.replay_of, 'create_time', NEW.create_time, 'tick_time', NEW.tick_time,
        'update_time', NEW.update_time)::text);"""
_JOB_NOTIFY = """PERFORM pg_notify('job_events',
        json_build_object('kind', 'job', 'job_id', NEW.id, 'state', NEW.state)::text);"""


def _function(name: str, body: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {body}
    RETURN NULL;
END $$
"""


def _if_watched(job: str, notify: str) -> str:
    return f"IF {_WATCHED.format(job=job)} THEN\n        {notify}\n    END IF;"


_EXECUTION_FUNCTION = _function("notify_execution_event", _if_watched("NEW.job_id", _EXECUTION_NOTIFY))
_JOB_FUNCTION = _function("notify_job_event", _if_watched("NEW.id", _JOB_NOTIFY))
# Migration 0004's, as they were.
_EVERY_EXECUTION_FUNCTION = _function("notify_execution_event", _EXECUTION_NOTIFY)
_EVERY_JOB_FUNCTION = _function("notify_job_event", _JOB_NOTIFY)


def upgrade() -> None:
    op.create_table(
        "watched_jobs",
        sa.Column("job_id", sa.Uuid(), primary_key=True),
        sa.Column("watcher", sa.Text(), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute(_EXECUTION_FUNCTION)
    op.execute(_JOB_FUNCTION)


def downgrade() -> None:
    op.execute(_EVERY_JOB_FUNCTION)
    op.execute(_EVERY_EXECUTION_FUNCTION)
    op.drop_table("watched_jobs")
