"""UpdateJob's merge rules as a pure function: apply_patch(stored definition, patch)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from jobs_common.domain import (
    REDACTED,
    UPDATABLE_FIELDS,
    CatchUpPolicy,
    HttpMethod,
    HttpRequestSpec,
    JobDraft,
    JobPatch,
    JobSpec,
    OverlapPolicy,
    RecurringSchedule,
    RetryPolicy,
    ScheduleDraft,
    apply_patch,
    draft_of,
    patch_leaves,
)
from jobs_common.errors import InvalidArgumentError

RUN_AT = datetime(2030, 1, 1, tzinfo=UTC)
STORED_SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()


def _spec(schedule: RecurringSchedule | None = None, run_at: datetime | None = None) -> JobSpec:
    return JobSpec(
        http_request=HttpRequestSpec(
            method=HttpMethod.PUT,
            url="https://api.example.com/hook",
            headers={"Authorization": "Bearer stored", "X-Plain": "visible"},
            body=b"{}",
            secret_headers=frozenset({"authorization"}),
            signing_secrets=(STORED_SECRET,),
        ),
        timeout=timedelta(seconds=30),
        retry_policy=RetryPolicy(5, timedelta(seconds=1), timedelta(seconds=60), 2.0, (409,)),
        run_at=run_at,
        queue="payments",
        labels={"team": "a"},
        schedule=schedule,
    )


EVERY_HOUR = RecurringSchedule(
    cron=None,
    interval=timedelta(hours=1),
    overlap=OverlapPolicy.ALLOW,
    catch_up=CatchUpPolicy.RUN_ALL,
    catch_up_limit=3,
    start_time=None,
    end_time=None,
    max_runs=None,
)


def test_a_patch_replaces_only_the_fields_it_names():
    sent = JobDraft(url="https://api.example.com/v2", method="GET", queue="ignored")
    merged = apply_patch(_spec(), JobPatch(paths=("http_request.url",), sent=sent))
    assert merged.url == "https://api.example.com/v2"
    assert merged.method == "PUT"
    assert merged.queue == "payments"


def test_a_message_path_replaces_every_field_under_it():
    merged = apply_patch(_spec(), JobPatch(paths=("retry_policy",), sent=JobDraft(url="", max_attempts=2)))
    assert merged.max_attempts == 2
    assert merged.min_backoff is None
    assert merged.retry_status_codes == []


def test_redacted_keeps_the_stored_secrets():
    sent = JobDraft(url="", headers={"authorization": REDACTED, "X-New": "1"}, signing_secrets=[REDACTED, "whsec_n"])
    paths = ("http_request.headers", "http_request.signing.secrets")
    merged = apply_patch(_spec(), JobPatch(paths=paths, sent=sent))
    assert merged.headers == {"authorization": "Bearer stored", "X-New": "1"}  # by name, any case
    assert merged.signing_secrets == [STORED_SECRET, "whsec_n"]  # by position


def test_redacted_for_a_header_that_is_not_secret_stays_redacted():
    sent = JobDraft(url="", headers={"X-Plain": REDACTED})
    merged = apply_patch(_spec(), JobPatch(paths=("http_request.headers",), sent=sent))
    assert merged.headers == {"X-Plain": REDACTED}  # which validation then refuses


def test_a_job_keeps_its_kind():
    cron = JobDraft(url="", schedule=ScheduleDraft(cron_expression="0 9 * * *"))
    with pytest.raises(InvalidArgumentError) as raised:
        apply_patch(_spec(), JobPatch(paths=("schedule",), sent=cron))
    assert [v.field for v in raised.value.violations] == ["job.schedule"]
    with pytest.raises(InvalidArgumentError):
        apply_patch(_spec(EVERY_HOUR), JobPatch(paths=("schedule",), sent=JobDraft(url="")))


def test_a_one_off_job_keeps_its_run_at():
    later = JobDraft(url="", run_at=RUN_AT + timedelta(days=1))
    with pytest.raises(InvalidArgumentError) as raised:
        apply_patch(_spec(run_at=RUN_AT), JobPatch(paths=("schedule.run_at",), sent=later))
    assert [v.field for v in raised.value.violations] == ["job.schedule.run_at"]
    same = JobDraft(url="", run_at=RUN_AT)
    assert apply_patch(_spec(run_at=RUN_AT), JobPatch(paths=("schedule",), sent=same)).run_at == RUN_AT


def test_a_cron_leaf_creates_the_cron_it_belongs_to():
    sent = JobDraft(url="", schedule=ScheduleDraft(cron_expression="", time_zone="Europe/Paris"))
    merged = apply_patch(_spec(EVERY_HOUR), JobPatch(paths=("schedule.cron.time_zone",), sent=sent))
    assert merged.schedule.cron_expression == ""
    assert merged.schedule.time_zone == "Europe/Paris"
    assert merged.schedule.interval == timedelta(hours=1)  # both kinds now: validation names it


def test_an_unknown_path_is_refused():
    with pytest.raises(InvalidArgumentError) as raised:
        apply_patch(_spec(), JobPatch(paths=("http_request.nope",), sent=JobDraft(url="")))
    assert [v.field for v in raised.value.violations] == ["update_mask"]


def test_every_updatable_field_has_leaves_and_a_stored_job_drafts_back_to_itself():
    assert all(patch_leaves(name) for name in UPDATABLE_FIELDS)
    for spec in (_spec(), _spec(EVERY_HOUR), _spec(run_at=RUN_AT)):
        assert apply_patch(spec, JobPatch(paths=(), sent=JobDraft(url=""))) == draft_of(spec)
        assert draft_of(spec).schedule.catch_up_limit == (3 if spec.schedule else 0)
