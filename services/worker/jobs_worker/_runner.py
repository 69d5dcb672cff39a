"""``run_execution``: claim the execution in PostgreSQL, make the call, record it, go on.

Delivery is at least once; this function makes duplicates harmless. A delivery that finds the
execution finished returns at once; one that finds it not yet due or leased to another worker
defers itself with arq's ``Retry`` until then.

While a call runs, the worker's lease keeper (:meth:`ExecutionRunner.renew_lease`, from a thread
of its own) keeps the worker's lease, which covers every execution it holds.
An outcome PostgreSQL cannot take (it is down) is kept in memory and written when it answers
again, for up to WORKER_RECORD_DEADLINE: the call is not made a second time for an outage.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from arq import Retry
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs_common.backoff import Backoff
from jobs_common.domain import (
    TERMINAL_EXECUTION_STATES,
    AttemptResult,
    Claim,
    ErrorKind,
    ExecutionState,
    HttpOutcome,
    NotClaimed,
    decide,
)
from jobs_common.errors import DEPENDENCY_ERRORS, dependency_error_summary
from jobs_common.logs import bind, redact_url_queries
from jobs_common.store import ExecutionLeases
from jobs_common.throughput import Throughput
from jobs_common.tracing import AttemptSpan, ExecutionTrace
from jobs_worker._clients import HttpClients
from jobs_worker._http import perform
from jobs_worker.metrics import (
    ATTEMPT_SECONDS,
    ATTEMPTS,
    DISPATCH_LAG_SECONDS,
    EXECUTIONS_FINISHED,
    IN_FLIGHT,
    LEASES_LOST,
    STORE_ERRORS,
)

__all__ = ["ExecutionRunner"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Errors after which PostgreSQL may answer again: retry the write, or redeliver the job.
STORAGE_ERRORS = DEPENDENCY_ERRORS
# Redelivery delay when PostgreSQL did not answer during a claim.
STORAGE_RETRY_DELAY = timedelta(seconds=2)
# How long a release (the worker stopping) keeps trying: the process is about to exit.
RELEASE_DEADLINE = timedelta(seconds=5)
# Backoff between write retries: doubling from the first, capped so a write lands within about
# this long of PostgreSQL answering again (before a lapsed lease can be taken over).
WRITE_BACKOFF_FIRST = 0.1
WRITE_BACKOFF_CAP = 1.0
# A delivery of an execution whose queue is paused comes back after this long.
PAUSED_RECHECK_DELAY = timedelta(seconds=5)
# A delivery that finds another worker's lease waits this long past its expiry before retrying.
LEASE_EXPIRY_MARGIN = timedelta(milliseconds=200)


class ExecutionRunner:
    def __init__(
        self,
        leases: ExecutionLeases,
        clients: HttpClients,
        capture_bytes: int,
        record_deadline: timedelta,
        throughput: Throughput,
        max_redirects: int = 0,
    ) -> None:
        # Counts for GetQueueStats, written to Redis by the worker's heartbeat.
        self.throughput = throughput
        self._leases = leases
        self._clients = clients
        self._capture_bytes = capture_bytes
        self._record_deadline = record_deadline
        self._max_redirects = max_redirects
        # Executions this process holds a lease on, from the claim until the outcome is written.
        self._held: dict[uuid.UUID, Claim] = {}
        # Claims and records that failed on PostgreSQL since the last one that succeeded.
        self._failures_in_a_row = 0
        self._last_failure = ""

    def health_problem(self, unhealthy_after: int) -> str | None:
        """Why this worker is unhealthy (``unhealthy_after`` claims or records in a row
        failed), or None."""
        if self._failures_in_a_row < unhealthy_after:
            return None
        return f"{self._failures_in_a_row} claims or records in a row failed; the last: {self._last_failure}"

    def _failed(self, operation: str, exc: BaseException) -> None:
        STORE_ERRORS.labels(operation).inc()
        self._failures_in_a_row += 1
        self._last_failure = f"{operation}: {dependency_error_summary(exc)}"

    def _succeeded(self) -> None:
        self._failures_in_a_row = 0

    async def renew_lease(self, engine: AsyncEngine | None = None) -> None:
        """Extends this worker's lease, which covers every execution it holds; from the lease
        keeper's thread, on its own ``engine``."""
        try:
            held = await self._leases.renew(engine)
        except STORAGE_ERRORS:
            STORE_ERRORS.labels("renew").inc()
            raise
        if not held and self._held:
            LEASES_LOST.inc(len(self._held))
            logger.warning(
                "this worker's lease lapsed (it missed its heartbeats): its %d executions may have been taken "
                "over, and their results will then be kept as superseded attempts",
                len(self._held),
            )

    async def leave(self) -> None:
        """Gives up this worker's lease (a clean stop, once nothing runs)."""
        await self._leases.leave()

    async def run(self, execution_id: str) -> str:
        """Runs one delivery of an execution; returns a short outcome for arq's result key."""
        try:
            claimed = await self._leases.claim(uuid.UUID(execution_id))
        except STORAGE_ERRORS as exc:
            self._failed("claim", exc)
            logger.warning("claim of %s failed (%s); redelivering", execution_id, exc)
            raise Retry(defer=STORAGE_RETRY_DELAY) from exc
        self._succeeded()
        if isinstance(claimed, NotClaimed):
            return self._not_claimed(execution_id, claimed)
        self._held[claimed.execution_id] = claimed
        self.throughput.count("started")
        # On every line this delivery logs from here on (JSON logs: fields of their own).
        bind(job_id=str(claimed.job_id), execution_id=execution_id, attempt=claimed.number)
        DISPATCH_LAG_SECONDS.observe(claimed.due_for.total_seconds())
        execution_trace = ExecutionTrace.of(claimed.execution_id, claimed.trace_parent)
        try:
            with execution_trace.attempt(claimed.request.method.value, _attempt_attributes(claimed)) as span:
                result = await self._run_claimed(claimed, span)
        finally:
            del self._held[claimed.execution_id]
            self._leases.forget(claimed.execution_id)
        if result is not None and result.state in TERMINAL_EXECUTION_STATES:
            execution_trace.end_execution(
                claimed.create_time,
                {**_execution_attributes(claimed), "jobscheduler.execution.state": result.state.value},
                error=None if result.state is ExecutionState.SUCCEEDED else result.error_message,
            )
        return "SUPERSEDED" if result is None else result.state.value

    async def _run_claimed(self, claimed: Claim, span: AttemptSpan) -> AttemptResult | None:
        """Makes the attempt and records it; returns what was recorded (None: superseded), or
        raises arq's ``Retry`` for a retry."""
        execution_id = str(claimed.execution_id)
        if claimed.counted_before >= claimed.retry_policy.max_attempts:
            # Earlier attempts died with their workers and used up the budget: no call. A job
            # that kills its worker every time (a poison job) ends here.
            result = AttemptResult(
                ExecutionState.DEAD,
                error_kind=ErrorKind.INTERRUPTED,
                error_message=f"all {claimed.retry_policy.max_attempts} attempts used (workers lost)",
            )
        else:
            if claimed.secrets_problem is not None:  # a configuration fault: retried, maybe elsewhere
                problem = f"this worker cannot open the job's secrets: {claimed.secrets_problem}"
                outcome = HttpOutcome(error_kind=ErrorKind.POLICY, error_message=problem)
            else:
                outcome = await self._call(claimed, span.traceparent())
            result = decide(outcome, claimed.retry_policy, claimed.counted_before + 1)
        _describe_attempt(span, result)
        try:
            moved = await self._with_retries(
                lambda: self._leases.finish(claimed, result), self._record_deadline, "record"
            )
        except STORAGE_ERRORS as exc:
            # Kept as long as WORKER_RECORD_DEADLINE allows; now the outcome is given up and the
            # call is made again once the lease lapses.
            logger.error("could not record execution %s attempt %d: %s", execution_id, claimed.number, exc)
            raise Retry(defer=STORAGE_RETRY_DELAY) from exc
        if moved:
            EXECUTIONS_FINISHED.labels(result.state.value).inc()
            if result.state is ExecutionState.SUCCEEDED:
                self.throughput.count("succeeded")
            elif result.state is ExecutionState.DEAD:
                self.throughput.count("failed")
        else:
            logger.info("execution %s attempt %d superseded (cancelled or re-leased)", execution_id, claimed.number)
            return None
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
        return result

    async def _call(self, claimed: Claim, traceparent: str | None) -> HttpOutcome:
        """Makes the attempt's HTTP call, measured; a cancelled call hands the execution back."""
        started = time.perf_counter()
        IN_FLIGHT.inc()
        try:
            outcome = await perform(
                self._clients.for_call(str(claimed.execution_id)),
                claimed.request,
                str(claimed.execution_id),
                claimed.number,
                claimed.timeout,
                self._capture_bytes,
                traceparent,
                self._max_redirects,
            )
        except asyncio.CancelledError:
            # A cancel (arq abort) or the worker stopping: either way the attempt is not a failure.
            handed_back = await asyncio.shield(self._release(claimed))
            ATTEMPT_SECONDS.observe(time.perf_counter() - started)
            # Handed back to the queue: the worker stopped; else the execution was cancelled.
            ATTEMPTS.labels("cancelled", (ErrorKind.INTERRUPTED if handed_back else ErrorKind.CANCELLED).value).inc()
            raise
        finally:
            IN_FLIGHT.dec()
        elapsed = time.perf_counter() - started
        ATTEMPT_SECONDS.observe(elapsed)
        self.throughput.duration(elapsed)
        kind = outcome.error_kind
        ATTEMPTS.labels("success" if kind is None else "failure", "" if kind is None else kind.value).inc()
        return outcome

    def _not_claimed(self, execution_id: str, found: NotClaimed) -> str:
        if found.finished:
            logger.info("execution %s is %s; duplicate delivery ignored", execution_id, found.state or "missing")
            return f"SKIPPED:{found.state or 'MISSING'}"
        if found.paused:
            # The queue's Redis pause key was missing (lost with Redis's data); PostgreSQL still
            # says paused. Look again later; the reconciler puts the key back meanwhile.
            raise Retry(defer=PAUSED_RECHECK_DELAY)
        if found.until_lease_expiry is not None and found.state is ExecutionState.RUNNING:
            # Another worker holds it; come back when its lease lapses, in case that worker died.
            raise Retry(defer=found.until_lease_expiry + LEASE_EXPIRY_MARGIN)
        raise Retry(defer=max(found.until_due, timedelta(milliseconds=10)))

    async def _release(self, claim: Claim) -> bool:
        """Hands the execution back (True), unless it was cancelled or is no longer ours."""
        try:
            return await self._with_retries(
                lambda: self._leases.release(claim, "worker stopped during the call"), RELEASE_DEADLINE, "release"
            )
        except STORAGE_ERRORS:
            logger.exception("could not release execution %s; its lease will lapse", claim.execution_id)
            return True  # it will be run again, once the lease lapses

    async def _with_retries(self, write: Callable[[], Awaitable[T]], deadline: timedelta, operation: str) -> T:
        """Runs a PostgreSQL write, retrying with capped backoff until ``deadline`` has passed;
        each failed try counts as an ``operation`` error."""
        give_up_at = time.monotonic() + deadline.total_seconds()
        backoff = Backoff(WRITE_BACKOFF_FIRST, WRITE_BACKOFF_CAP)
        while True:
            try:
                result = await write()
            except STORAGE_ERRORS as exc:
                self._failed(operation, exc)
                delay = backoff.next_delay()
                if time.monotonic() + delay > give_up_at:
                    raise
                if backoff.failures == 1:
                    logger.warning("PostgreSQL write failed (%s); keeping the outcome and retrying", exc)
                await asyncio.sleep(delay)
            else:
                self._succeeded()
                if backoff.failures:
                    logger.info("PostgreSQL write succeeded after %d failures", backoff.failures)
                return result


def _execution_attributes(claimed: Claim) -> dict[str, str | int]:
    return {
        "jobscheduler.job.id": str(claimed.job_id),
        "jobscheduler.execution.id": str(claimed.execution_id),
        "jobscheduler.attempt": claimed.number,
    }


def _attempt_attributes(claimed: Claim) -> dict[str, str | int]:
    """OpenTelemetry HTTP client attributes (the URL without credentials, its query values masked
    unless TELEMETRY_URL_QUERIES) and our ids."""
    url = urlsplit(claimed.request.url)
    host = url.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if url.port is not None:
        netloc += f":{url.port}"
    attributes: dict[str, str | int] = {
        "http.request.method": claimed.request.method.value,
        "url.full": redact_url_queries(urlunsplit((url.scheme, netloc, url.path, url.query, ""))),
        "server.address": host,
        **_execution_attributes(claimed),
    }
    if url.port is not None:
        attributes["server.port"] = url.port
    return attributes


def _describe_attempt(span: AttemptSpan, result: AttemptResult) -> None:
    if result.status_code is not None:
        span.set("http.response.status_code", result.status_code)
    span.set("jobscheduler.execution.state", result.state.value)
    if result.error_kind is not None:
        error_type = str(result.status_code) if result.error_kind is ErrorKind.HTTP_STATUS else result.error_kind.value
        span.fail(error_type, redact_url_queries(result.error_message))
