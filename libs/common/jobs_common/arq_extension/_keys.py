"""Names in Redis: arq's job ids and queues for our executions, and our own keys beside them."""

from __future__ import annotations

__all__ = ["ARQ_MAX_TRIES", "RUN_EXECUTION", "arq_job_id", "arq_queue_name", "paused_key"]

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
