"""PostgreSQL access: :class:`JobStore` for the api, :class:`TickStore` for its scheduler,
:class:`Reconciliation` for its reconciler, :class:`JobEvents` for WatchJob, :class:`ExecutionLeases` for the worker."""

from jobs_common.store._dead_letters import DeadLetterFilter, DeadLetters
from jobs_common.store._events import RESYNC, ExecutionChanged, JobChanged, JobEvent, JobEvents
from jobs_common.store._jobs import CreatedJob, JobStore, Replayed
from jobs_common.store._leases import AttemptResult, Claim, ExecutionLeases, NotClaimed
from jobs_common.store._queues import QueueDepth, QueueInfo, QueueStore
from jobs_common.store._reconcile import LostExecution, Reconciliation
from jobs_common.store._ticks import FiredTicks, RunNow, TickStore

__all__ = [
    "RESYNC",
    "AttemptResult",
    "Claim",
    "CreatedJob",
    "DeadLetterFilter",
    "DeadLetters",
    "ExecutionChanged",
    "ExecutionLeases",
    "FiredTicks",
    "JobChanged",
    "JobEvent",
    "JobEvents",
    "JobStore",
    "LostExecution",
    "NotClaimed",
    "QueueDepth",
    "QueueInfo",
    "QueueStore",
    "Reconciliation",
    "Replayed",
    "RunNow",
    "TickStore",
]
