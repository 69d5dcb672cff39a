"""The stored side, fuzzed (issue 18, finding 3): any row the database's checks let into ``jobs``
is read into an answer (GetJob's, with its upcoming runs) without an exception, and the
scheduler's planning step ends with ticks that are due and within bounds (or raises, and the
pass sets the job aside). Pure: rows are built in memory, as the store reads them."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs_api.convert import job_to_proto
from jobs_common.db import JobRow
from jobs_common.db._models import CATCH_UP_POLICIES, HTTP_METHODS, JOB_STATES, OVERLAP_POLICIES
from jobs_common.domain import upcoming_run_times
from jobs_common.secrets import SecretBox
from jobs_common.store._rows import job_from_row
from jobs_common.store._ticks import _plan

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES * 2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INT32 = st.integers(-(2**31), 2**31 - 1)
# The checks' range (migration 0016), edges included.
EDGES = [
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime.max.replace(tzinfo=UTC),
]
TIMES = st.one_of(
    st.none(),
    st.sampled_from([*EDGES, datetime.now(UTC)]),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)),
)
TEXT = st.one_of(st.text(max_size=30), st.sampled_from(["* * * * *", "@daily", "0 0 31 2 *", "UTC", "Europe/Paris"]))
SEALED = st.one_of(st.none(), st.text(max_size=40), st.sampled_from(["plain:", "v1::", "plain:e30=", "v1:gone:AAAA"]))


@st.composite
def stored_jobs(draw: st.DrawFn) -> JobRow:
    kind = draw(st.sampled_from(["ONE_OFF", "CRON", "INTERVAL", "INTERVAL"]))
    created = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)))
    return JobRow(
        id=uuid.uuid4(),
        tenant="default",
        request_id=None,
        request_fingerprint=None,
        run_at=draw(TIMES),
        queue=draw(TEXT),
        labels=draw(st.dictionaries(TEXT, TEXT, max_size=3)),
        state=draw(st.sampled_from(["ACTIVE", *JOB_STATES])),  # ACTIVE twice: most reads plan
        last_execution_id=None,
        create_time=created,
        update_time=created,
        schedule_kind=kind,
        cron_expression=draw(TEXT) if kind == "CRON" else None,
        time_zone=draw(st.one_of(st.none(), TEXT)) if kind == "CRON" else None,
        interval_ms=draw(st.integers(1, 3155760000000)) if kind == "INTERVAL" else None,
        overlap_policy=draw(st.sampled_from(OVERLAP_POLICIES)),
        catch_up_policy=draw(st.sampled_from(CATCH_UP_POLICIES)),
        catch_up_limit=draw(INT32),
        start_time=draw(TIMES),
        end_time=draw(TIMES),
        max_runs=draw(st.one_of(st.none(), INT32)),
        run_count=draw(INT32),
        next_run_time=draw(TIMES),
        buffered_tick=draw(TIMES),
        schedule_error=draw(st.one_of(st.none(), TEXT)),
        method=draw(st.sampled_from(HTTP_METHODS)),
        url=draw(TEXT),
        headers=draw(st.dictionaries(TEXT, TEXT, max_size=3)),
        body=draw(st.binary(max_size=20)),
        timeout_ms=draw(INT32),
        max_attempts=draw(INT32),
        min_backoff_ms=draw(INT32),
        max_backoff_ms=draw(INT32),
        multiplier=draw(st.floats(allow_nan=True, allow_infinity=True)),
        retry_status_codes=draw(st.lists(INT32, max_size=3)),
        follow_redirects=draw(st.booleans()),
        sealed_secrets=draw(SEALED),
    )


@FUZZ
@given(row=stored_jobs())
def test_every_storable_job_can_be_answered(row: JobRow):
    job = job_from_row(row, None, SecretBox())
    job_to_proto(job, upcoming_run_times(job)).SerializeToString()


@FUZZ
@given(row=stored_jobs(), now=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
def test_the_scheduler_plans_a_storable_job_in_bounds_or_sets_it_aside(row: JobRow, now: datetime):
    """Planning ends (the test's timeout), and what it plans is due and within the catch-up
    limit; a row it cannot plan raises, and the pass sets that job aside (test_stored_jobs)."""
    if row.schedule_kind == "ONE_OFF":
        return
    now = now.replace(tzinfo=UTC)
    try:
        _, plan = _plan(row, now, is_due=row.next_run_time is not None and row.next_run_time <= now)
    except Exception:
        return
    if plan is not None:
        assert all(tick <= now for tick in plan.due)
        assert len(plan.due) <= max(row.catch_up_limit, 1)
