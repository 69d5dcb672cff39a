"""job events: NOTIFY job_events on every execution and job state change, for WatchJob

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 00:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The payload is the execution's row image at the change (NOTIFY is delivered on commit, in
# commit order); last_error is cut so the payload stays far below NOTIFY's 8000-byte limit.
_EXECUTION_FUNCTION = """
CREATE FUNCTION notify_execution_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('job_events', json_build_object(
        'kind', 'execution', 'job_id', NEW.job_id, 'id', NEW.id, 'state', NEW.state,
        'attempt_count', NEW.attempt_count, 'schedule_time', NEW.schedule_time,
        'start_time', NEW.start_time, 'end_time', NEW.end_time, 'last_error', left(NEW.last_error, 1000),
        'replay_of', NEW.replay_of, 'create_time', NEW.create_time, 'tick_time', NEW.tick_time,
        'update_time', NEW.update_time)::text);
    RETURN NULL;
END $$
"""

_JOB_FUNCTION = """
CREATE FUNCTION notify_job_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('job_events', json_build_object('kind', 'job', 'job_id', NEW.id, 'state', NEW.state)::text);
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.execute(_EXECUTION_FUNCTION)
    op.execute(_JOB_FUNCTION)
    op.execute(
        "CREATE TRIGGER executions_notify_insert AFTER INSERT ON executions"
        " FOR EACH ROW EXECUTE FUNCTION notify_execution_event()"
    )
    op.execute(
        "CREATE TRIGGER executions_notify_update AFTER UPDATE ON executions FOR EACH ROW"
        " WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.attempt_count IS DISTINCT FROM NEW.attempt_count)"
        " EXECUTE FUNCTION notify_execution_event()"
    )
    op.execute(
        "CREATE TRIGGER jobs_notify_update AFTER UPDATE ON jobs FOR EACH ROW"
        " WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION notify_job_event()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER jobs_notify_update ON jobs")
    op.execute("DROP TRIGGER executions_notify_update ON executions")
    op.execute("DROP TRIGGER executions_notify_insert ON executions")
    op.execute("DROP FUNCTION notify_job_event()")
    op.execute("DROP FUNCTION notify_execution_event()")
