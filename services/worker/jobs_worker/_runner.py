"""``run_execution``: claim the execution in PostgreSQL, make the call, record it, go on.

Delivery is at least once; this function makes duplicates harmless. A delivery that finds the
execution finished returns at once; one that finds it not yet due or leased to another worker
defers itself with arq's ``Retry`` until then.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

import httpx
from arq import Retry

from jobs_common.domain import ErrorKind, ExecutionState
from jobs_common.errors import DEPENDENCY_ERRORS
from jobs_common.store import AttemptResult, Claim, ExecutionLeases, NotClaimed
from jobs_worker._http import perform
from jobs_worker._outcome import decide

__all__ = ["ExecutionRunner"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Errors after which PostgreSQL may answer again: retry the write, or redeliver the job.
STORAGE_ERRORS = DEPENDENCY_ERRORS
# Redelivery delay when PostgreSQL did not answer during a claim.
STORAGE_RETRY_DELAY = timedelta(seconds=2)


class ExecutionRunner:
    def __init__(
        self,
        leases: ExecutionLeases,
        client: httpx.AsyncClient,
        capture_bytes: int,
        write_retries: int,
    ) -> None:
        self._leases = leases
        self._client = client
        self._capture_bytes = capture_bytes
        self._write_retries = write_retries

    async def run(self, execution_id: str) -> str:
        """Runs one delivery of an execution; returns a short outcome for arq's result key."""
        try:
            claimed = await self._leases.claim(uuid.UUID(execution_id))
        except STORAGE_ERRORS as exc:
            logger.warning("claim of %s failed (%s); redelivering", execution_id, exc)
            raise Retry(defer=STORAGE_RETRY_DELAY) from exc
        if isinstance(claimed, NotClaimed):
            return self._not_claimed(execution_id, claimed)
        if claimed.counted_before >= claimed.retry_policy.max_attempts:
            # Earlier attempts died with their worker and used up the budget: no call.
            result = AttemptResult(
                ExecutionState.DEAD,
                error_kind=ErrorKind.INTERRUPTED,
                error_message=f"all {claimed.retry_policy.max_attempts} attempts used (workers lost)",
            )
        else:
            try:
                outcome = await perform(
                    self._client, claimed.request, execution_id, claimed.timeout, self._capture_bytes
                )
            except asyncio.CancelledError:
                # A cancel (arq abort) or the worker stopping: either way the attempt is not a failure.
                await asyncio.shield(self._release(claimed))
                raise
            result = decide(outcome, claimed.retry_policy, claimed.counted_before + 1)
        try:
            moved = await self._record(claimed, result)
        except STORAGE_ERRORS as exc:
            # The outcome is lost with this process; the lease lapses and the call is made again.
            logger.error("could not record execution %s attempt %d: %s", execution_id, claimed.number, exc)
            raise Retry(defer=claimed.timeout + STORAGE_RETRY_DELAY) from exc
        if not moved:
            logger.info("execution %s attempt %d superseded (cancelled or re-leased)", execution_id, claimed.number)
            return "SUPERSEDED"
        logger.info(
            "execution %s attempt %d → %s%s",
            execution_id,
            claimed.number,
            result.state.value,
            f" ({result.error_message})" if result.error_message else "",
        )
        if result.state is ExecutionState.RETRY_SCHEDULED:
            assert result.retry_delay is not None
            raise Retry(defer=result.retry_delay)
        return result.state.value

    def _not_claimed(self, execution_id: str, found: NotClaimed) -> str:
        if found.finished:
            logger.info("execution %s is %s; duplicate delivery ignored", execution_id, found.state or "missing")
            return f"SKIPPED:{found.state or 'MISSING'}"
        if found.until_lease_expiry is not None and found.state is ExecutionState.RUNNING:
            # Another worker holds it; come back when its lease lapses, in case that worker died.
            raise Retry(defer=found.until_lease_expiry + timedelta(seconds=1))
        raise Retry(defer=max(found.until_due, timedelta(milliseconds=10)))

    async def _record(self, claim: Claim, result: AttemptResult) -> bool:
        return await self._with_retries(lambda: self._leases.finish(claim, result))

    async def _release(self, claim: Claim) -> None:
        try:
            await self._with_retries(lambda: self._leases.release(claim, "worker stopped during the call"))
        except STORAGE_ERRORS:
            logger.exception("could not release execution %s; its lease will lapse", claim.execution_id)

    async def _with_retries(self, write: Callable[[], Awaitable[T]]) -> T:
        """Runs a PostgreSQL write, retrying WORKER_RETRY_COUNT times with backoff."""
        for retry in range(self._write_retries + 1):
            try:
                return await write()
            except STORAGE_ERRORS:
                if retry == self._write_retries:
                    raise
                await asyncio.sleep(min(0.2 * 2**retry, 5.0))
        raise AssertionError("unreachable")
