"""One classification of "PostgreSQL or Redis cannot serve now" (jobs_common.errors)."""

from __future__ import annotations

import asyncpg
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import create_async_engine

from jobs_common.errors import DEPENDENCY_ERRORS, LISTENER_ERRORS, dependency_unavailable
from jobs_common.store._events import asyncpg_connect_args
from tests.support.services import PG_ADMIN_URL

PG_HOST = f"{make_url(PG_ADMIN_URL).host}:{make_url(PG_ADMIN_URL).port or 5432}"


@pytest.mark.parametrize(
    "error",
    [
        PoolTimeoutError("QueuePool limit of size 10 overflow 10 reached"),  # thousands of claims queued
        RedisConnectionError("Connection refused"),
        ConnectionRefusedError(),
        TimeoutError(),
    ],
)
def test_an_outage_or_an_exhausted_pool_is_a_dependency_error(error):
    assert isinstance(error, DEPENDENCY_ERRORS)
    assert dependency_unavailable(error)


def test_a_refused_statement_or_a_bug_is_not():
    refused = ProgrammingError("SELECT nope", {}, Exception("relation does not exist"))
    assert not dependency_unavailable(refused)
    assert not dependency_unavailable(ValueError("a bug"))


async def test_no_primary_among_several_hosts_is_a_dependency_error():
    """Several hosts with target_session_attrs: when none has the role asked for (between a
    primary's loss and a standby's promotion), the error is "cannot serve now", not a bug.
    ``standby`` against this machine's one primary makes that moment for real."""
    url = f"postgresql+asyncpg://postgres@/postgres?host={PG_HOST}&host={PG_HOST}&target_session_attrs=standby"
    engine = create_async_engine(url)
    try:
        with pytest.raises(DBAPIError) as raised:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        assert isinstance(raised.value, DEPENDENCY_ERRORS)
        assert dependency_unavailable(raised.value)
        with pytest.raises(LISTENER_ERRORS) as raw:  # WatchJob's own connection
            await asyncpg.connect(**asyncpg_connect_args(url), timeout=5)
        assert dependency_unavailable(raw.value)
    finally:
        await engine.dispose()
