"""Capped doubling delays for a loop that waits for a dependency to answer again (a poll loop
while Redis is down, a write while PostgreSQL is). A job's retry delays are another matter: they
are the job's policy (:func:`jobs_common.domain.next_delay`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(slots=True)
class Backoff:
    """``first``, then twice that after each failure, never more than ``cap`` (seconds);
    :meth:`reset` after a success starts again from ``first``."""

    first: float
    cap: float
    failures: int = 0

    def next_delay(self) -> float:
        """The wait after one more failure (and counts it)."""
        delay = min(self.first * 2.0 ** min(self.failures, 32), self.cap)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
