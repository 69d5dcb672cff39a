"""PostgreSQL: the schema (SQLAlchemy models) and the engine."""

from jobs_common.db._engine import create_engine
from jobs_common.db._models import (
    CALL_COLUMNS,
    UNFINISHED_STATES,
    AttemptRow,
    Base,
    CallDefinition,
    DeduplicationRow,
    ExecutionRow,
    JobRow,
    QueueSettingsRow,
    WatchedJobRow,
    WorkerLeaseRow,
)

__all__ = [
    "CALL_COLUMNS",
    "UNFINISHED_STATES",
    "AttemptRow",
    "Base",
    "CallDefinition",
    "DeduplicationRow",
    "ExecutionRow",
    "JobRow",
    "QueueSettingsRow",
    "WatchedJobRow",
    "WorkerLeaseRow",
    "create_engine",
]
