"""``python -m jobs_worker.healthcheck``: exit 0 while this container's worker loop is alive
and its claims and records reach PostgreSQL.

The worker refreshes WORKER_HEALTH_FILE from arq's poll loop; a file older than
WORKER_HEALTH_MAX_AGE means the loop is stuck or the worker is gone. The file holds a problem
when WORKER_UNHEALTHY_AFTER_ERRORS claims or records in a row failed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from jobs_common.settings import Settings


def main() -> int:
    settings = Settings()
    health_file = Path(settings.worker_health_file)
    try:
        age = time.time() - health_file.stat().st_mtime
        problem = health_file.read_text().strip()
    except FileNotFoundError:
        print(f"unhealthy: {settings.worker_health_file} does not exist")
        return 1
    if age > settings.worker_health_max_age.total_seconds():
        print(f"unhealthy: last heartbeat {age:.0f}s ago")
        return 1
    if problem:
        print(f"unhealthy: {problem}")
        return 1
    print(f"healthy: last heartbeat {age:.1f}s ago")
    return 0


if __name__ == "__main__":
    sys.exit(main())
