"""Messages said in a few words, for people (jobctl's tables, the console)."""

from __future__ import annotations

from jobscheduler.v1 import queue_service_pb2 as qpb

__all__ = ["describe_rate_limits"]


def describe_rate_limits(limits: qpb.RateLimits) -> str:
    """The limits set, as ``20/s (burst 5), 3 at once``; ``none`` without any."""
    parts = []
    if limits.max_dispatches_per_second:
        parts.append(f"{limits.max_dispatches_per_second:g}/s (burst {limits.max_burst_size})")
    if limits.max_concurrent_dispatches:
        parts.append(f"{limits.max_concurrent_dispatches} at once")
    return ", ".join(parts) or "none"
