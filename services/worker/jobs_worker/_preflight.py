"""Before a worker takes jobs: Redis answers, and PostgreSQL answers at the schema this worker
was built for. A worker that cannot reach either would otherwise log ready, show in ListWorkers
and fail every claim while its jobs wait."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from alembic.script import ScriptDirectory
from sqlalchemy import text

from jobs_common.arq_extension import connect, redis_settings
from jobs_common.db import create_engine
from jobs_common.errors import DEPENDENCY_ERRORS, dependency_error_summary
from jobs_common.migrate import alembic_config
from jobs_common.settings import Settings

__all__ = ["DependenciesNotReadyError", "wait_for_dependencies"]

logger = logging.getLogger(__name__)

# Between two checks; the first failure is logged, the last is the exit message.
_RETRY_EVERY = 1.0


class DependenciesNotReadyError(Exception):
    """Redis or PostgreSQL did not answer as needed within WORKER_STARTUP_TIMEOUT."""


async def wait_for_dependencies(settings: Settings) -> None:
    """Returns once both answer; raises DependenciesNotReadyError, naming each problem, when they
    have not by WORKER_STARTUP_TIMEOUT."""
    give_up_at = time.monotonic() + settings.worker_startup_timeout.total_seconds()
    needed = _schema_head()
    logged = False
    while True:
        problems = [p for p in (await _redis_problem(settings), await _postgres_problem(settings, needed)) if p]
        if not problems:
            return
        if time.monotonic() + _RETRY_EVERY > give_up_at:
            waited = settings.worker_startup_timeout.total_seconds()
            raise DependenciesNotReadyError(f"within {waited:g}s (WORKER_STARTUP_TIMEOUT): " + "; ".join(problems))
        if not logged:
            logger.warning("waiting for dependencies: %s", "; ".join(problems))
            logged = True
        await asyncio.sleep(_RETRY_EVERY)


async def _redis_problem(settings: Settings) -> str | None:
    # One try per round: this loop is the retry, not arq's.
    once = dataclasses.replace(redis_settings(settings), conn_retries=0)
    try:
        pool = await connect(once)
        try:
            await pool.ping()
        finally:
            await pool.aclose()
    except DEPENDENCY_ERRORS as exc:
        return f"Redis at {once.host}:{once.port} db {once.database}: {dependency_error_summary(exc)}"
    return None


async def _postgres_problem(settings: Settings, needed: str) -> str | None:
    engine = create_engine(settings)
    where = f"PostgreSQL at {settings.public_database_url}"
    try:
        async with engine.connect() as conn:
            has_schema = await conn.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
            found = await conn.scalar(text("SELECT version_num FROM alembic_version")) if has_schema else None
    except DEPENDENCY_ERRORS as exc:
        return f"{where}: {dependency_error_summary(exc)}"
    finally:
        await engine.dispose()
    if found != needed:
        return (
            f"{where} has schema revision {found or 'none'}, this worker needs {needed}"
            " (the api migrates at start; or run python -m jobs_common.migrate)"
        )
    return None


def _schema_head() -> str:
    head = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    assert head is not None
    return head
