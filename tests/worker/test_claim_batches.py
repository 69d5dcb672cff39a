"""A worker's concurrent claims and outcomes share statements (group commit) with the same answers
one at a time would give: each due execution claimed once, a second delivery told who holds it,
a delivery cancelled while its claim was written hands the execution back, and each outcome is
fenced by its own lease."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from jobs_common.domain import AttemptResult, Claim, ExecutionState, NotClaimed
from jobs_common.secrets import SecretBox
from jobs_common.store import ExecutionLeases
from jobscheduler.v1 import job_service_pb2 as api
from tests.support.jobs import create, eventually, http_job

pytestmark = pytest.mark.usefixtures("api")


@pytest.fixture
async def engine(settings) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(settings.database_url)
    yield engine
    await engine.dispose()


async def _queued(stub, target, count: int) -> tuple[list[str], list[uuid.UUID]]:
    """``count`` jobs on a queue no worker serves: their executions wait, QUEUED."""
    queue = f"batches-{uuid.uuid4().hex[:8]}"
    jobs = [await create(stub, http_job(target.url("/ok/batches"), queue=queue)) for _ in range(count)]
    return [job.id for job in jobs], [uuid.UUID(job.last_execution.id) for job in jobs]


async def _delete(stub, job_ids: list[str]) -> None:
    for job_id in job_ids:
        await stub.DeleteJob(api.DeleteJobRequest(id=job_id))


async def test_concurrent_claims_share_a_statement_and_a_second_delivery_is_told_who_holds_it(stub, target, engine):
    job_ids, ids = await _queued(stub, target, 20)
    leases = ExecutionLeases(engine, f"batch-test:{uuid.uuid4().hex[:6]}", timedelta(seconds=30), SecretBox())
    await leases.join()
    try:
        answers = await asyncio.gather(*(leases.claim(i) for i in [*ids, ids[3]]))
        claims, again = answers[:-1], answers[-1]
        assert all(isinstance(claim, Claim) for claim in claims)
        assert [claim.execution_id for claim in claims if isinstance(claim, Claim)] == ids
        assert {claim.number for claim in claims if isinstance(claim, Claim)} == {1}
        # The first claim went out alone; the 20 that came while it was written went together.
        assert (leases._claims.batches, leases._claims.items) == (2, 21)
        assert isinstance(again, NotClaimed)
        assert again.state is ExecutionState.RUNNING
        assert not again.finished
        assert again.until_lease_expiry is not None
        assert again.until_lease_expiry > timedelta(seconds=20)
        async with engine.connect() as conn:
            opened = await conn.scalar(
                text("SELECT count(*) FROM attempts WHERE worker_id = :w AND number = 1 AND end_time IS NULL"),
                {"w": leases.worker_id},
            )
        assert opened == 20
    finally:
        for claim in answers:
            if isinstance(claim, Claim):
                await leases.release(claim, "test over")
        await leases.leave()
        await _delete(stub, job_ids)


async def test_a_delivery_cancelled_while_its_claim_is_written_hands_the_execution_back(stub, target, engine):
    job_ids, (first, second) = await _queued(stub, target, 2)
    leases = ExecutionLeases(engine, f"batch-test:{uuid.uuid4().hex[:6]}", timedelta(seconds=30), SecretBox())
    await leases.join()
    try:
        claiming = asyncio.create_task(leases.claim(first))
        await asyncio.sleep(0)  # its batch is being written
        abandoned = asyncio.create_task(leases.claim(second))
        await asyncio.sleep(0)  # waiting for the next batch
        abandoned.cancel()
        held = await claiming
        assert isinstance(held, Claim)
        assert abandoned.cancelled()

        async def handed_back() -> tuple[str, int, str | None, str | None]:
            async with engine.connect() as conn:
                row = (
                    await conn.execute(
                        text(
                            "SELECT e.state, e.interrupted_attempts, a.error_kind, a.error_message"
                            " FROM executions e LEFT JOIN attempts a ON a.execution_id = e.id WHERE e.id = :id"
                        ),
                        {"id": second},
                    )
                ).one()
            return row.state, row.interrupted_attempts, row.error_kind, row.error_message

        async def attempt_ended() -> bool:
            return (await handed_back())[2] is not None

        await eventually(attempt_ended, timeout=5)
        assert await handed_back() == ("QUEUED", 1, "INTERRUPTED", "the delivery was cancelled before its call")
        await leases.release(held, "test over")
    finally:
        await leases.leave()
        await _delete(stub, job_ids)


async def test_concurrent_outcomes_share_a_statement_each_fenced_as_alone(stub, target, engine):
    """Twenty outcomes recorded at once: the first alone, the rest in one statement. One whose
    lease another worker took meanwhile is kept as a superseded attempt and moves nothing."""
    job_ids, ids = await _queued(stub, target, 20)
    leases = ExecutionLeases(engine, f"batch-test:{uuid.uuid4().hex[:6]}", timedelta(seconds=30), SecretBox())
    await leases.join()
    try:
        claims = [claim for claim in await asyncio.gather(*(leases.claim(i) for i in ids)) if isinstance(claim, Claim)]
        assert len(claims) == 20
        taken_over = claims[7].execution_id
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE executions SET lease_owner = 'another-worker:1' WHERE id = :id"), {"id": taken_over}
            )
        result = AttemptResult(
            ExecutionState.SUCCEEDED,
            status_code=200,
            response_headers={"content-type": "text/plain"},
            response_body=b"ok",
        )
        moved = await asyncio.gather(*(leases.finish(claim, result) for claim in claims))
        assert moved == [claim.execution_id != taken_over for claim in claims]
        assert (leases._finishes.batches, leases._finishes.items) == (2, 20)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT e.id, e.state, j.state AS job_state, a.response_status_code, a.response_headers,"
                        " a.response_body, a.superseded, a.end_time IS NOT NULL AS ended"
                        " FROM executions e JOIN jobs j ON j.id = e.job_id JOIN attempts a ON a.execution_id = e.id"
                        " WHERE e.id = ANY(:ids)"
                    ),
                    {"ids": ids},
                )
            ).all()
        by_id = {row.id: row for row in rows}
        assert len(by_id) == 20
        for execution_id, row in by_id.items():
            assert row.response_status_code == 200
            assert row.response_headers == {"content-type": "text/plain"}
            assert bytes(row.response_body) == b"ok"
            assert row.ended
            if execution_id == taken_over:
                assert (row.state, row.job_state, row.superseded) == ("RUNNING", "ACTIVE", True)
            else:
                assert (row.state, row.job_state, row.superseded) == ("SUCCEEDED", "COMPLETED", False)
    finally:
        await leases.leave()
        await _delete(stub, job_ids)
