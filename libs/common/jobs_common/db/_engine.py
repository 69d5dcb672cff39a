from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from jobs_common.settings import Settings

__all__ = ["create_engine"]


def create_engine(settings: Settings) -> AsyncEngine:
    """The one engine of a process."""
    return create_async_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        # No pre-ping: it costs a round trip per checkout. A connection that broke (PostgreSQL
        # restarted) fails one call, which answers UNAVAILABLE or is redelivered, and is replaced.
        pool_pre_ping=False,
        # Short connect timeout: a down database answers UNAVAILABLE quickly instead of hanging.
        connect_args={"timeout": 5, "server_settings": {"application_name": "job-scheduler"}},
    )
