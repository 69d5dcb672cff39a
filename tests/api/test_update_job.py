"""UpdateJob without an update_mask (AIP-134's implied mask): only the populated leaf fields
change; a partly set nested message never erases its siblings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobs_api.validation import JobLimits, validate_job
from jobs_common.domain import draft_of
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb
from tests.common.test_patch import EVERY_HOUR, _spec
from tests.support.jobs import create, every, seconds, wait_terminal


def _full_job(url: str) -> pb.Job:
    """A recurring job with every nested message of Job populated."""
    job = pb.Job(
        http_request=pb.HttpRequest(
            url=url,
            method=pb.HTTP_METHOD_PUT,
            headers={"Authorization": "Bearer s3cret-token", "Content-Type": "application/json"},
            body=b'{"hello": "world"}',
            secret_headers=[],
        ),
        queue="default",
        labels={"team": "payments", "tier": "gold"},
    )
    job.timeout.CopyFrom(seconds(30))
    job.retry_policy.max_attempts = 4
    job.retry_policy.min_backoff.CopyFrom(seconds(0.2))
    job.retry_policy.max_backoff.CopyFrom(seconds(5))
    job.retry_policy.multiplier = 3
    job.retry_policy.retry_status_codes.append(409)
    job.schedule.CopyFrom(every(3600, start_in_s=3600, overlap_policy=pb.OVERLAP_POLICY_ALLOW, max_runs=50))
    return job


def _cron_job(url: str) -> pb.Job:
    job = _full_job(url)
    job.schedule.Clear()
    job.schedule.cron.expression = "0 9 * * *"
    job.schedule.cron.time_zone = "Europe/Berlin"
    job.schedule.overlap_policy = pb.OVERLAP_POLICY_BUFFER_ONE
    return job


def _without_output(job: pb.Job) -> pb.Job:
    kept = pb.Job()
    kept.CopyFrom(job)
    for name in ("update_time", "next_run_time", "upcoming_run_times", "last_execution"):
        kept.ClearField(name)
    return kept


# One leaf of every nested message of Job, and how an update sets it.
CASES = {
    "http_request.url": (lambda job, url: setattr(job.http_request, "url", url + "?v=2")),
    "http_request.method": (lambda job, url: setattr(job.http_request, "method", pb.HTTP_METHOD_PATCH)),
    "http_request.follow_redirects": (lambda job, url: setattr(job.http_request, "follow_redirects", True)),
    "retry_policy.max_attempts": (lambda job, url: setattr(job.retry_policy, "max_attempts", 7)),
    "retry_policy.min_backoff": (lambda job, url: job.retry_policy.min_backoff.CopyFrom(seconds(1))),
    "retry_policy.multiplier": (lambda job, url: setattr(job.retry_policy, "multiplier", 1.5)),
    "schedule.overlap_policy": (lambda job, url: setattr(job.schedule, "overlap_policy", pb.OVERLAP_POLICY_SKIP)),
    "schedule.max_runs": (lambda job, url: setattr(job.schedule, "max_runs", 9)),
    "timeout": (lambda job, url: job.timeout.CopyFrom(seconds(45))),
    "queue": (lambda job, url: setattr(job, "queue", "billing")),
}


@pytest.mark.parametrize("leaf", sorted(CASES))
async def test_an_update_without_a_mask_changes_only_the_populated_leaf(stub, target, key, leaf):
    url = target.url(f"/ok/{key}")
    job = await create(stub, _full_job(url))
    update = pb.Job(id=job.id)
    CASES[leaf](update, url)
    updated = (await stub.UpdateJob(api.UpdateJobRequest(job=update))).job

    expected = _without_output(job)
    CASES[leaf](expected, url)
    assert _without_output(updated) == expected
    stored = (await stub.GetJob(api.GetJobRequest(id=job.id))).job
    assert _without_output(stored) == expected


async def test_a_url_change_keeps_the_headers_and_body_that_the_next_run_sends(stub, target, worker, key):
    """The newcomer's case: the URL changed, the Authorization header and the body went missing,
    and the next run got 401."""
    job = await create(stub, _full_job(target.url(f"/ok/{key}")))
    update = pb.Job(id=job.id, http_request=pb.HttpRequest(url=target.url(f"/ok/{key}-v2")))
    await stub.UpdateJob(api.UpdateJobRequest(job=update))

    ran = (await stub.RunJob(api.RunJobRequest(id=job.id))).execution
    assert (await wait_terminal(stub, ran.id)).state == pb.EXECUTION_STATE_SUCCEEDED
    [received] = target.received(f"/ok/{key}-v2")
    assert received.method == "PUT"
    assert received.headers["Authorization"] == "Bearer s3cret-token"
    assert received.headers["Content-Type"] == "application/json"
    assert received.body == b'{"hello": "world"}'


async def test_a_partly_set_cron_schedule_keeps_its_expression(stub, target, key):
    job = await create(stub, _cron_job(target.url(f"/ok/{key}")))
    update = pb.Job(id=job.id)
    update.schedule.cron.time_zone = "America/New_York"
    updated = (await stub.UpdateJob(api.UpdateJobRequest(job=update))).job
    assert updated.schedule.cron.expression == "0 9 * * *"
    assert updated.schedule.cron.time_zone == "America/New_York"
    assert updated.schedule.overlap_policy == pb.OVERLAP_POLICY_BUFFER_ONE


async def test_maps_and_lists_are_leaves_replaced_whole(stub, target, key):
    job = await create(stub, _full_job(target.url(f"/ok/{key}")))
    update = pb.Job(id=job.id, labels={"team": "search"})
    update.retry_policy.retry_status_codes.append(423)
    updated = (await stub.UpdateJob(api.UpdateJobRequest(job=update))).job
    assert dict(updated.labels) == {"team": "search"}
    assert list(updated.retry_policy.retry_status_codes) == [423]
    assert updated.retry_policy.max_attempts == 4  # a sibling of the replaced list: kept
    assert updated.http_request.headers["Authorization"] == "[REDACTED]"


async def test_a_set_but_empty_message_changes_nothing(stub, target, key):
    job = await create(stub, _full_job(target.url(f"/ok/{key}")))
    update = pb.Job(id=job.id)
    update.retry_policy.SetInParent()
    update.http_request.SetInParent()
    updated = (await stub.UpdateJob(api.UpdateJobRequest(job=update))).job
    assert _without_output(updated) == _without_output(job)


async def test_signing_generate_secret_alone_keeps_the_other_request_fields(stub, target, key):
    job = await create(stub, _full_job(target.url(f"/ok/{key}")))
    update = pb.Job(id=job.id)
    update.http_request.signing.generate_secret = True
    updated = (await stub.UpdateJob(api.UpdateJobRequest(job=update))).job
    [secret] = updated.http_request.signing.secrets
    assert secret.startswith("whsec_")  # generated, and shown once
    assert updated.http_request.body == b'{"hello": "world"}'
    assert updated.http_request.headers["Authorization"] == "[REDACTED]"


def test_a_stored_definition_checked_again_is_unchanged(settings):
    """UpdateJob re-checks the merged job: a definition drafted back must validate to itself."""
    limits = JobLimits.from_settings(settings)
    run_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    for spec in (_spec(), _spec(EVERY_HOUR), _spec(run_at=run_at)):
        assert validate_job(draft_of(spec), limits) == spec
