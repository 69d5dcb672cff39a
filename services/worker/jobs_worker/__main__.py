"""``python -m jobs_worker`` / ``jobs-worker``: one worker process."""

from __future__ import annotations

from jobs_common.logs import configure_logging
from jobs_common.settings import Settings
from jobs_worker._worker import build_worker


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    build_worker(settings).run()


if __name__ == "__main__":
    main()
