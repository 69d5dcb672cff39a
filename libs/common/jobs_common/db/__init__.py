"""PostgreSQL: the schema (SQLAlchemy models) and the engine."""

from jobs_common.db._engine import create_engine
from jobs_common.db._models import AttemptRow, Base, ExecutionRow, JobRow

__all__ = ["AttemptRow", "Base", "ExecutionRow", "JobRow", "create_engine"]
