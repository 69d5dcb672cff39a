"""What the api puts on arq: an execution, its queue, when it is due, its priority and its flow key."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from jobs_common.domain import Execution, FlowControl

__all__ = ["Dispatch", "Flow", "dispatch_of"]


class Flow(NamedTuple):
    """An execution's flow key (Job.flow_control) and the limits its job set, with when that job
    was created (ms): in Redis the latest job's limits of a key win, whatever the order of their
    dispatches."""

    key: str
    max_concurrent: int = 0
    max_dispatches_per_second: float = 0.0
    since_ms: int = 0

    @classmethod
    def of(cls, control: FlowControl | None, since: datetime | None) -> Flow | None:
        if control is None:
            return None
        since_ms = int(since.timestamp() * 1000) if since is not None else 0
        return cls(control.key, control.max_concurrent, control.max_dispatches_per_second, since_ms)


class Dispatch(NamedTuple):
    """One execution to enqueue: due at ``run_at`` (None or past: now), claimed by ``priority``
    (0-9) and under its ``flow`` key's limits (None: only its queue's)."""

    execution_id: object
    queue: str
    run_at: datetime | None = None
    priority: int = 0
    flow: Flow | None = None


def dispatch_of(execution: Execution, queue: str, run_at: datetime | None = None) -> Dispatch:
    """The dispatch of a stored execution of ``queue``, at its priority and under its flow key."""
    return Dispatch(execution.id, queue, run_at, execution.priority, Flow.of(execution.flow, execution.flow_since))
