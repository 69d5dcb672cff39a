"""Process-wide logging set-up."""

from __future__ import annotations

import logging

__all__ = ["configure_logging"]


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # arq logs a line per job start/end at INFO; keep them, but httpx's per-request lines add noise.
    logging.getLogger("httpx").setLevel(logging.WARNING)
