"""Names in Redis: arq's job ids and queues for our executions, and our own keys beside them."""

from __future__ import annotations

__all__ = [
    "ABORTS_KEY_PREFIX",
    "ARQ_MAX_TRIES",
    "HELD_KEY_PREFIX",
    "RUN_EXECUTION",
    "aborts_key",
    "arq_job_id",
    "arq_queue_name",
    "held_key",
    "paused_key",
    "worker_leases_key",
]

RUN_EXECUTION = "run_execution"

# Attempts are counted in PostgreSQL; arq's own try counter (which also counts redeliveries after
# a shutdown) is only a backstop against a bug that would loop forever.
ARQ_MAX_TRIES = 10_000


def arq_job_id(execution_id: object) -> str:
    return f"exec:{execution_id}"


def arq_queue_name(queue: str) -> str:
    return f"jobs:queue:{queue}"


def paused_key(queue: str) -> str:
    """Exists while the queue is paused (QueueService.PauseQueue); its workers then claim nothing.
    PostgreSQL's queue_settings is the record; the reconciler sets this key again after a loss."""
    return f"jobs:paused:{queue}"


def worker_leases_key(queue: str) -> str:
    """Sorted set of the queue's workers (``<worker id>#<token>``), scored by when their lease
    lapses (ms): their heartbeat pushes it on; a claim anywhere puts a lapsed one's calls back."""
    return f"jobs:leases:{queue}"


HELD_KEY_PREFIX = "jobs:held:"


def held_key(holder: str) -> str:
    """Hash of what a worker holds: arq job id → the score it was claimed at (when it was due)."""
    return HELD_KEY_PREFIX + holder


ABORTS_KEY_PREFIX = "jobs:aborts:"


def aborts_key(holder: str) -> str:
    """Set of the jobs a worker holds that were asked to abort since its last poll: its claim
    reads and empties it, so a poll's cost for aborts does not grow with arq's abort set."""
    return ABORTS_KEY_PREFIX + holder
