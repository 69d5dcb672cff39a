"""A claim whose answer never came back (PostgreSQL committed it, then the connection dropped)
leaves the execution RUNNING under this worker's own live lease. No delivery of it runs here, so
the next delivery takes it again, instead of waiting for a lease that never lapses (the chaos
suite's stop-postgres found one such execution stuck for good); a delivery that does run here
keeps it."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from jobs_common.domain import Claim, NotClaimed
from jobs_common.secrets import SecretBox
from jobs_common.store import ExecutionLeases
from jobscheduler.v1 import job_service_pb2 as api
from tests.support.jobs import create, http_job

pytestmark = pytest.mark.usefixtures("api")


async def test_a_claim_whose_answer_was_lost_is_taken_again_by_the_same_worker(settings, stub):
    # A queue no worker serves: only this test claims its execution.
    job = await create(stub, http_job("https://hooks.example.com/lost-answer", queue=f"lost-{uuid.uuid4().hex[:8]}"))
    execution_id = uuid.UUID(job.last_execution.id)
    engine = create_async_engine(settings.database_url)
    worker_id = f"test-worker-{uuid.uuid4().hex[:8]}"
    try:
        leases = ExecutionLeases(engine, worker_id, timedelta(seconds=30), SecretBox())
        await leases.join()
        # The same process's claim, whose answer it never saw: committed, but not held here.
        lost_answer = ExecutionLeases(engine, worker_id, timedelta(seconds=30), SecretBox())
        lost_answer.epoch = leases.epoch
        first = await lost_answer.claim(execution_id)
        assert isinstance(first, Claim)
        assert first.number == 1

        again = await leases.claim(execution_id)
        assert isinstance(again, Claim), again
        assert again.number == 2
        # While that delivery runs here, a duplicate delivery does not take it.
        duplicate = await leases.claim(execution_id)
        assert isinstance(duplicate, NotClaimed)
        # Once it is over (and was given up, say), the next delivery may.
        leases.forget(execution_id)
        assert isinstance(third := await leases.claim(execution_id), Claim)
        assert third.number == 3

        async with engine.connect() as conn:
            attempts = (
                await conn.execute(
                    text("SELECT number, error_kind FROM attempts WHERE execution_id = :id ORDER BY number"),
                    {"id": execution_id},
                )
            ).all()
        # The attempts that never reported are closed as interrupted (they use up no retry).
        assert [(a.number, a.error_kind) for a in attempts] == [(1, "INTERRUPTED"), (2, "INTERRUPTED"), (3, None)]
        await stub.CancelExecution(api.CancelExecutionRequest(id=str(execution_id)))
    finally:
        await engine.dispose()
