"""GetScalingRecommendation's policy, as a pure function: up on backlog, down only when idle
past the cooldown, always within the bounds."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobs_api.scaling import ScalingInputs, recommend

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
        (_inputs(100_000, 2), 10, "needs 2000, within [1, 10]: 10; scale up"),
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
