"""Job.flow_control: limits the jobs of a queue with one key share."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_FLOW_CONCURRENT", "MAX_FLOW_KEY_LENGTH", "MAX_FLOW_RATE", "FlowControl"]

# Job.flow_control's bounds: a key's length, its calls open at once and started a second.
MAX_FLOW_KEY_LENGTH = 256
MAX_FLOW_CONCURRENT = 100_000
MAX_FLOW_RATE = 10_000.0


@dataclass(frozen=True, slots=True)
class FlowControl:
    """Job.flow_control: limits every job of the queue with ``key`` shares, across the fleet (0:
    none): calls open at once and started a second. The latest job created with a key sets them."""

    key: str
    max_concurrent: int = 0
    max_dispatches_per_second: float = 0.0
