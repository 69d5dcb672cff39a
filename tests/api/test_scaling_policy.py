"""GetScalingRecommendation's policy, as a pure function: up on backlog, on processing demand
(rate * duration) or on ready work waiting too long; down only when idle past the cooldown;
always within the bounds."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobs_common.domain import ScalingInputs, recommend

COOLDOWN = timedelta(minutes=5)


def _inputs(backlog: int, current: int, idle_for: timedelta = timedelta(0), **overrides: object) -> ScalingInputs:
    values: dict[str, object] = {
        "backlog": backlog,
        "current_workers": current,
        "per_worker_capacity": 100,
        "target_utilization": 0.5,
        "min_workers": 1,
        "max_workers": 10,
        "scale_down_cooldown": COOLDOWN,
        "idle_for": idle_for,
    }
    values.update(overrides)
    return ScalingInputs(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("inputs", "desired", "why"),
    [
        # 120 / (100 * 0.5) = 2.4 → 3 workers.
        (_inputs(120, 1), 3, "scale up from 1"),
        (_inputs(100_000, 2), 10, "needs 2000; processing 0/s * ?s = 0 in flight needs 0; 2000 within [1, 10]: 10"),
        # Same small backlog, but 10 calls/s of 20 s each keep 200 in flight: 200 / 50 = 4.
        (
            _inputs(30, 1, arrival_rate=10.0, mean_duration=timedelta(seconds=20)),
            4,
            "= 200 in flight needs 4; 4 within [1, 10]: 4; scale up from 1",
        ),
        # The calls got 10x slower at the same rate: the demand grows with them.
        (_inputs(30, 4, arrival_rate=10.0, mean_duration=timedelta(seconds=2)), 4, "= 20 in flight needs 1"),
        (_inputs(30, 4, arrival_rate=10.0, mean_duration=timedelta(seconds=30)), 6, "= 300 in flight needs 6"),
        # Counts say 1 is enough, but ready work has waited 30 s: one more than now.
        (
            _inputs(20, 2, oldest_ready_age=timedelta(seconds=30)),
            3,
            "ready work waited 30s > 10s: one more; 3 within [1, 10]: 3; scale up from 2",
        ),
        (_inputs(20, 2, oldest_ready_age=timedelta(seconds=5)), 2, "busy, under the 300s cooldown: keep 2"),
        (_inputs(20, 10, oldest_ready_age=timedelta(seconds=30)), 10, "11 within [1, 10]: 10; no change"),
        (_inputs(0, 0), 1, "scale up from 0"),
        (_inputs(50, 1), 1, "no change"),
        # Fewer would do, but the queue is busy: scale-down waits for idleness.
        (_inputs(10, 4), 4, "busy, under the 300s cooldown: keep 4"),
        (_inputs(0, 4, idle_for=timedelta(minutes=2)), 4, "idle for 120s, under the 300s cooldown: keep 4"),
        (_inputs(0, 4, idle_for=timedelta(minutes=6)), 1, "idle past the cooldown: scale down"),
        (_inputs(0, 4, idle_for=timedelta(minutes=6), min_workers=0), 0, "idle past the cooldown: scale down"),
    ],
)
def test_recommend(inputs, desired, why):
    got, reason = recommend(inputs)
    assert got == desired
    assert why in reason
