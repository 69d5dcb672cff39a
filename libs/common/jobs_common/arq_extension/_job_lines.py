"""arq's two log lines per job, kept for DEBUG.

arq logs ``0.01s → exec:…:run_execution('…')`` when a job starts and ``0.02s ← exec:… ●`` when it
ends, at INFO. The worker's runner logs one line per attempt of its own, with the job, execution,
attempt and outcome bound (``execution … attempt 1 → SUCCEEDED``), so arq's two add nothing but
their cost: under ``make bench``, py-spy put 7-8 % of the worker's CPU in rendering them (a
LogRecord each, the structlog chain, the redaction, JSON, the write). With LOG_LEVEL=debug they
are written as before; arq's other lines (start, health, aborts, shutdown) always are.
"""

from __future__ import annotations

import logging

__all__ = ["ARQ_JOB_LINE_FORMATS", "quiet_arq_job_lines"]

# arq 0.28's formats for a job starting and a job ending (pinned by test_pinned_arq).
ARQ_JOB_LINE_FORMATS = frozenset({"%6.2fs → %s(%s)%s", "%6.2fs ← %s ● %s"})

_ARQ_WORKER_LOGGER = logging.getLogger("arq.worker")


class _JobLinesAtDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in ARQ_JOB_LINE_FORMATS or _ARQ_WORKER_LOGGER.isEnabledFor(logging.DEBUG)


def quiet_arq_job_lines() -> None:
    """Writes arq's start and end line of each job only when its logger is enabled for DEBUG
    (idempotent)."""
    if not any(isinstance(found, _JobLinesAtDebug) for found in _ARQ_WORKER_LOGGER.filters):
        _ARQ_WORKER_LOGGER.addFilter(_JobLinesAtDebug())
