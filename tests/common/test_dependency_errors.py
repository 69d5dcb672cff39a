"""One classification of "PostgreSQL or Redis cannot serve now" (jobs_common.errors)."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from jobs_common.errors import DEPENDENCY_ERRORS, dependency_unavailable


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
