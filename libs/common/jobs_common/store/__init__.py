"""PostgreSQL access: :class:`JobStore` for the api, :class:`ExecutionLeases` for the worker."""

from jobs_common.store._jobs import CreatedJob, JobStore, Replayed
from jobs_common.store._leases import AttemptResult, Claim, ExecutionLeases, NotClaimed

__all__ = ["AttemptResult", "Claim", "CreatedJob", "ExecutionLeases", "JobStore", "NotClaimed", "Replayed"]
