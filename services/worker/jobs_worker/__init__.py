"""job-scheduler's worker: arq runs ``run_execution`` for each execution on its queue."""

from jobs_worker._worker import build_worker, worker_id

__all__ = ["build_worker", "worker_id"]
