"""PostgreSQL access: :class:`JobStore` for the api, :class:`TickStore` for its scheduler,
:class:`Reconciliation` for its reconciler, :class:`HistoryPurge` for its retention, :class:`JobEvents` for
WatchJob, :class:`ExecutionLeases` for the worker."""

from jobs_common.store._dead_letters import DeadLetters
from jobs_common.store._events import RESYNC, ExecutionChanged, JobChanged, JobEvent, JobEvents
from jobs_common.store._history import HISTORY_PURGE_LOCK_KEY, HistoryPurge, PurgedBatch
from jobs_common.store._jobs import CreatedJob, JobStore, Replayed
from jobs_common.store._leases import ExecutionLeases
from jobs_common.store._queues import QueueStore
from jobs_common.store._reconcile import LostExecution, Reconciliation
from jobs_common.store._ticks import FiredTicks, RunNow, TickStore

__all__ = [
    "HISTORY_PURGE_LOCK_KEY",
    "RESYNC",
    "CreatedJob",
    "DeadLetters",
    "ExecutionChanged",
    "ExecutionLeases",
    "FiredTicks",
    "HistoryPurge",
    "JobChanged",
    "JobEvent",
    "JobEvents",
    "JobStore",
    "LostExecution",
    "PurgedBatch",
    "QueueStore",
    "Reconciliation",
    "Replayed",
    "RunNow",
    "TickStore",
]
