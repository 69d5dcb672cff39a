"""``python -m jobs_api`` / ``jobs-api``: the gRPC api process."""

from __future__ import annotations

import asyncio

from jobs_api.server import serve
from jobs_common.logs import configure_logging
from jobs_common.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
