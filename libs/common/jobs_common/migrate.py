"""Schema migrations: ``python -m jobs_common.migrate`` (the compose one-shot step) or
:func:`migrate` at api start-up. Safe when several processes migrate at once."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from jobs_common.settings import Settings

__all__ = ["alembic_config", "ensure_database", "main", "migrate"]

logger = logging.getLogger(__name__)

# Serialises concurrent migrations (api replicas starting together); any constant works.
_MIGRATION_LOCK_KEY = 0x6A6F6273  # "jobs"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url)
    return config


async def ensure_database(database_url: str) -> None:
    """Creates the database named in the URL when it does not exist (local development)."""
    url = make_url(database_url)
    name = url.database
    if not name:
        return
    engine = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            found = await conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if not found:
                quoted = name.replace('"', '""')
                await conn.execute(text(f'CREATE DATABASE "{quoted}"'))
                logger.info("created database %s", name)
    finally:
        await engine.dispose()


async def migrate(settings: Settings) -> None:
    """Brings the schema to the newest revision, under an advisory lock."""
    if settings.database_auto_create:
        await ensure_database(settings.database_url)
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            await conn.run_sync(_upgrade, settings.database_url)
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, database_url: str) -> None:
    config = alembic_config(database_url)
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(migrate(Settings()))


if __name__ == "__main__":
    main()
