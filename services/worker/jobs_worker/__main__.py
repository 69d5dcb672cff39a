"""``python -m jobs_worker`` / ``jobs-worker``: one worker process."""

from __future__ import annotations

import asyncio
import logging
import sys

from jobs_common.logs import configure_logging
from jobs_common.settings import Settings
from jobs_common.tracing import configure_tracing
from jobs_worker._preflight import DependenciesNotReadyError, wait_for_dependencies
from jobs_worker._worker import VERSION, build_worker

logger = logging.getLogger("jobs_worker")


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, keep_url_queries=settings.telemetry_url_queries)
    try:
        asyncio.run(wait_for_dependencies(settings))
    except DependenciesNotReadyError as exc:
        logger.error("worker not started: %s", exc)
        sys.exit(1)
    stop_tracing = configure_tracing(settings.tracing_enabled, "job-scheduler-worker", VERSION)
    try:
        build_worker(settings).run()
    finally:
        stop_tracing()  # exports what is left


if __name__ == "__main__":
    main()
