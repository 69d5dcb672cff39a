"""``python -m jobs_api`` / ``jobs-api``: the gRPC api process."""

from __future__ import annotations

import asyncio

from jobs_api.server import InsecureSettingsError, serve
from jobs_common.logs import configure_logging
from jobs_common.settings import Settings
from jobs_common.tracing import configure_tracing


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, keep_url_queries=settings.telemetry_url_queries)
    stop_tracing = configure_tracing(settings.tracing_enabled, "job-scheduler-api")
    try:
        asyncio.run(serve(settings))
    except InsecureSettingsError as error:
        raise SystemExit(f"jobs-api: {error}") from None
    finally:
        stop_tracing()  # exports what is left


if __name__ == "__main__":
    main()
