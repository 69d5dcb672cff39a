"""The reference: a bare arq worker whose job does nothing but count itself.

Runs with the same arq settings our worker uses (max_jobs, poll_delay, queue_read_limit), so the
difference measured is what job-scheduler adds: PostgreSQL history, the HTTP call, the api.
"""

from __future__ import annotations

import argparse
from typing import Any

from arq import Worker

from jobs_common.arq_extension import redis_settings
from jobs_common.logs import configure_logging
from jobs_common.settings import Settings

DONE_KEY = "bench:arq-noop:done"


async def noop(ctx: dict[str, Any]) -> None:
    await ctx["redis"].incr(DONE_KEY)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queue", required=True)
    args = parser.parse_args()
    settings = Settings()
    configure_logging(settings.log_level)
    Worker(
        functions=[noop],
        queue_name=args.queue,
        redis_settings=redis_settings(settings),
        max_jobs=settings.worker_max_concurrent_jobs,
        poll_delay=settings.queue_poll_interval,
        queue_read_limit=settings.worker_max_concurrent_jobs + settings.queue_batch_size,
        keep_result=settings.queue_keep_result,
        log_results=False,
    ).run()


if __name__ == "__main__":
    main()
