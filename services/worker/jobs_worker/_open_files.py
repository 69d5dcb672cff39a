"""File descriptors: a worker holds one socket per call in flight, so 10,000 calls need more than
the 1,024 a shell hands out by default. The soft limit is raised to the hard one at start (no
privilege needed); compose and the manifests set the hard limit (``nofile`` 65,536)."""

from __future__ import annotations

import logging
import resource

__all__ = ["raise_open_files_limit"]

logger = logging.getLogger(__name__)

# Beyond the calls: PostgreSQL and Redis pools, the metrics server, logs, the event loop.
SPARE_DESCRIPTORS = 256


def raise_open_files_limit(concurrency: int) -> int:
    """Raises the soft RLIMIT_NOFILE to the hard limit; returns the limit now in force, and
    warns when it is too low for ``concurrency`` calls."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    if soft < concurrency + SPARE_DESCRIPTORS:
        logger.warning(
            "open files limit is %d: too few for WORKER_MAX_CONCURRENT_JOBS=%d (one socket per call); "
            "raise nofile (ulimit -n, compose ulimits, the container runtime) to at least %d",
            soft,
            concurrency,
            concurrency + SPARE_DESCRIPTORS,
        )
    return soft
