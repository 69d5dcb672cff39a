"""GetScalingRecommendation's policy (the original plan's): scale up when the backlog or the
processing time needs more workers than run; scale down only once the queue has been idle for the
cooldown.

    per_worker = per_worker_capacity * target_utilization
    by_backlog = ceil(backlog / per_worker)
    by_demand  = ceil(arrival_rate * mean_duration / per_worker)     (Little's law)
    needed     = max(by_backlog, by_demand)
    if oldest_ready_age > max_ready_age and needed <= current:       (work waits for a worker)
        needed = current + 1
    desired = clamp(needed, min_workers, max_workers)
    if desired < current and the queue has not been idle (backlog 0) for the cooldown:
        desired = current

``backlog`` counts executions running or due within SCALING_DUE_WITHIN, the same figure KEDA's
external scaler serves. ``arrival_rate`` (attempts started per second over the last minute) times
``mean_duration`` (of the last attempts) is how many calls are in flight at that rate in steady
state: when calls grow slower at the same rate, this asks for workers before the backlog shows it.
A ready execution waiting longer than SCALING_MAX_READY_AGE means the workers do not keep up
whatever the counts say (CPU-bound, slow polls): one more worker, again at the next look if it
still waits.

The idle clock that feeds ``idle_for`` lives in Redis (:mod:`jobs_api.idle_clock`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from jobs_common.domain._queues import QueueDepth

__all__ = ["ScalingInputs", "ScalingPolicy", "oldest_ready_age", "per_worker_capacity", "recommend"]


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    """The operator's bounds (SCALING_*), read once from the settings."""

    target_utilization: float
    min_workers: int
    max_workers: int
    scale_down_cooldown: timedelta
    max_ready_age: timedelta
    # A worker's capacity when none is live to say its own (WORKER_MAX_CONCURRENT_JOBS).
    default_capacity: int

    def inputs(
        self,
        *,
        backlog: int,
        depth: Iterable[QueueDepth],
        worker_capacities: Sequence[int],
        started_last_minute: int,
        mean_duration: timedelta | None,
        idle_for: timedelta,
    ) -> ScalingInputs:
        """What :func:`recommend` decides from: the queue's figures under this policy."""
        return ScalingInputs(
            backlog=backlog,
            current_workers=len(worker_capacities),
            per_worker_capacity=per_worker_capacity(worker_capacities, self.default_capacity),
            target_utilization=self.target_utilization,
            min_workers=self.min_workers,
            max_workers=self.max_workers,
            scale_down_cooldown=self.scale_down_cooldown,
            idle_for=idle_for,
            arrival_rate=started_last_minute / 60,
            mean_duration=mean_duration,
            oldest_ready_age=oldest_ready_age(depth),
            max_ready_age=self.max_ready_age,
        )


@dataclass(frozen=True, slots=True)
class ScalingInputs:
    backlog: int
    current_workers: int
    per_worker_capacity: int
    target_utilization: float
    min_workers: int
    max_workers: int
    scale_down_cooldown: timedelta
    idle_for: timedelta
    # Attempts started per second over the last minute, and the mean duration of recent attempts
    # (None before any was measured).
    arrival_rate: float = 0.0
    mean_duration: timedelta | None = None
    oldest_ready_age: timedelta = timedelta(0)
    max_ready_age: timedelta = timedelta(seconds=10)

    @property
    def processing_demand(self) -> float:
        """Calls in flight that the arrival rate and the call duration imply (Little's law)."""
        if self.mean_duration is None:
            return 0.0
        return self.arrival_rate * self.mean_duration.total_seconds()


def recommend(inputs: ScalingInputs) -> tuple[int, str]:
    """(desired workers, why)."""
    per_worker = inputs.per_worker_capacity * inputs.target_utilization
    by_backlog = math.ceil(inputs.backlog / per_worker) if inputs.backlog else 0
    demand = inputs.processing_demand
    by_demand = math.ceil(demand / per_worker - 1e-9) if demand > 0 else 0
    needed = max(by_backlog, by_demand)
    basis = (
        f"backlog {inputs.backlog} / ({inputs.per_worker_capacity} * {inputs.target_utilization:g}) "
        f"needs {by_backlog}; processing {inputs.arrival_rate:.3g}/s * {_seconds(inputs.mean_duration)} "
        f"= {demand:.3g} in flight needs {by_demand}"
    )
    waiting = inputs.oldest_ready_age.total_seconds()
    if waiting > inputs.max_ready_age.total_seconds() and needed <= inputs.current_workers:
        needed = inputs.current_workers + 1
        basis += f"; ready work waited {waiting:.0f}s > {inputs.max_ready_age.total_seconds():g}s: one more"
    desired = min(max(needed, inputs.min_workers), inputs.max_workers)
    basis += f"; {needed} within [{inputs.min_workers}, {inputs.max_workers}]: {desired}"
    if desired < inputs.current_workers:
        if inputs.backlog or inputs.idle_for < inputs.scale_down_cooldown:
            waited = "busy" if inputs.backlog else f"idle for {inputs.idle_for.total_seconds():.0f}s"
            cooldown = inputs.scale_down_cooldown.total_seconds()
            return (
                inputs.current_workers,
                f"{basis}; {waited}, under the {cooldown:.0f}s cooldown: keep {inputs.current_workers}",
            )
        return desired, f"{basis}; idle past the cooldown: scale down"
    if desired > inputs.current_workers:
        return desired, f"{basis}; scale up from {inputs.current_workers}"
    return desired, f"{basis}; no change"


def _seconds(value: timedelta | None) -> str:
    return "?s" if value is None else f"{value.total_seconds():.3g}s"


def per_worker_capacity(capacities: Sequence[int], default: int) -> int:
    """The mean capacity of the live workers, or ``default`` when none is live."""
    return round(sum(capacities) / len(capacities)) if capacities else default


def oldest_ready_age(depth: Iterable[QueueDepth]) -> timedelta:
    """How long the oldest due, waiting execution of a queue has waited (0 when none waits):
    the depth reports an age only for waiting states."""
    return timedelta(seconds=max((row.oldest_ready_age or 0.0 for row in depth), default=0.0))
