"""Every bad input answers INVALID_ARGUMENT with a BadRequest naming the field, and stores nothing."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import error_info_reason, field_violations, http_job, seconds

URL = "http://127.0.0.1:9/hook"


def _job(**changes: object) -> pb.Job:
    job = http_job(URL)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        message = job
        for parent in parents:
            message = getattr(message, parent)
        if hasattr(getattr(message, leaf), "CopyFrom"):
            getattr(message, leaf).CopyFrom(value)
        elif isinstance(value, dict):
            getattr(message, leaf).update(value)
        elif isinstance(value, list):
            getattr(message, leaf).extend(value)
        else:
            setattr(message, leaf, value)
    return job


CASES = {
    "empty url": (_job(http_request__url=""), "job.http_request.url"),
    "ftp scheme": (_job(http_request__url="ftp://example.com/x"), "job.http_request.url"),
    "no host": (_job(http_request__url="http:///path"), "job.http_request.url"),
    "spaces in url": (_job(http_request__url="http://exa mple.com/"), "job.http_request.url"),
    "bad port": (_job(http_request__url="http://example.com:99999/"), "job.http_request.url"),
    "bad punycode host": (_job(http_request__url="http://xn--zz.com/"), "job.http_request.url"),
    "credentials in url": (_job(http_request__url="https://user:pw@example.com/"), "job.http_request.url"),
    "user in url": (_job(http_request__url="https://user@example.com/"), "job.http_request.url"),
    "decimal ip": (_job(http_request__url="http://2130706433/"), "job.http_request.url"),
    "octal ip": (_job(http_request__url="http://0177.0.0.1/"), "job.http_request.url"),
    "hex ip": (_job(http_request__url="http://0x7f.0.0.1/"), "job.http_request.url"),
    "short ip": (_job(http_request__url="http://127.1/"), "job.http_request.url"),
    "ipv4 in brackets": (_job(http_request__url="http://[127.0.0.1]/"), "job.http_request.url"),
    "name in brackets": (_job(http_request__url="http://[example.com]/"), "job.http_request.url"),
    "url too long": (_job(http_request__url="http://example.com/" + "a" * 3000), "job.http_request.url"),
    "unknown method": (_job(http_request__method=99), "job.http_request.method"),
    "body over limit": (_job(http_request__body=b"x" * (1024 * 1024 + 1)), "job.http_request.body"),
    "too many headers": (
        _job(http_request__headers={f"x-h{i}": "v" for i in range(65)}),
        "job.http_request.headers",
    ),
    "headers too large": (_job(http_request__headers={"x-big": "v" * 17000}), "job.http_request.headers"),
    "header value with newline": (
        _job(http_request__headers={"x-evil": "a\r\nInjected: yes"}),
        "job.http_request.headers",
    ),
    # RFC 9110 field values as httpx sends them: visible ASCII, spaces, tabs.
    "header value with a control character": (
        _job(http_request__headers={"x-a": "a\x01b"}),
        "job.http_request.headers",
    ),
    "header value outside ASCII": (_job(http_request__headers={"x-a": "caf\u20ac"}), "job.http_request.headers"),
    "header value with DEL": (_job(http_request__headers={"x-a": "a\x7fb"}), "job.http_request.headers"),
    "invalid header name": (_job(http_request__headers={"bad header": "v"}), "job.http_request.headers"),
    "redacted header value": (
        _job(http_request__headers={"Authorization": "[REDACTED]"}),
        "job.http_request.headers",
    ),
    "secret header not among the headers": (
        _job(http_request__secret_headers=["X-Token"]),
        "job.http_request.secret_headers[0]",
    ),
    "signing secret without prefix": (
        _job(http_request__signing__secrets=["c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"]),
        "job.http_request.signing.secrets[0]",
    ),
    "signing secret too short": (
        _job(http_request__signing__secrets=["whsec_c2hvcnQ="]),
        "job.http_request.signing.secrets[0]",
    ),
    "too many signing secrets": (
        _job(http_request__signing__secrets=["whsec_" + "QUFB" * 8] * 6),
        "job.http_request.signing.secrets",
    ),
    "signature header given to a signed job": (
        _job(http_request__headers={"webhook-signature": "v1,x"}, http_request__signing__generate_secret=True),
        "job.http_request.headers",
    ),
    "reserved header": (_job(http_request__headers={"Idempotency-Key": "mine"}), "job.http_request.headers"),
    "zero timeout": (_job(timeout=seconds(0)), "job.timeout"),
    "negative timeout": (_job(timeout=seconds(-1)), "job.timeout"),
    "timeout over maximum": (_job(timeout=seconds(301)), "job.timeout"),
    "zero max_attempts": (_job(retry_policy__max_attempts=0), "job.retry_policy.max_attempts"),
    "max_attempts over cap": (_job(retry_policy__max_attempts=101), "job.retry_policy.max_attempts"),
    "negative min_backoff": (_job(retry_policy__min_backoff=seconds(-1)), "job.retry_policy.min_backoff"),
    "negative max_backoff": (_job(retry_policy__max_backoff=seconds(-1)), "job.retry_policy.max_backoff"),
    "min_backoff above max_backoff": (
        _job(retry_policy__min_backoff=seconds(10), retry_policy__max_backoff=seconds(5)),
        "job.retry_policy.min_backoff",
    ),
    "multiplier below 1": (_job(retry_policy__multiplier=0.5), "job.retry_policy.multiplier"),
    "non-4xx retry status": (_job(retry_policy__retry_status_codes=[200]), "job.retry_policy.retry_status_codes"),
    "bad queue name": (_job(queue="Bad Queue"), "job.queue"),
    # Python's `$` matches before a final newline: every pattern must match the whole value.
    "queue name with a trailing newline": (_job(queue="default\n"), "job.queue"),
    "label key with a trailing newline": (_job(labels={"team\n": "x"}), "job.labels"),
    "label value with a trailing newline": (_job(labels={"team": "x\n"}), "job.labels"),
    "header name with a trailing newline": (_job(http_request__headers={"X-Team\n": "v"}), "job.http_request.headers"),
    "bad label key": (_job(labels={"Bad": "x"}), "job.labels"),
    "bad label value": (_job(labels={"team": "Has Spaces"}), "job.labels"),
    # No string field takes NUL (PostgreSQL cannot store it); the refusal names the field.
    "NUL in the url": (_job(http_request__url="http://example.com/a\0b"), "job.http_request.url"),
    "NUL in a header value": (_job(http_request__headers={"X-A": "a\0"}), "job.http_request.headers"),
    "NUL in a label key": (_job(labels={"te\0am": "x"}), "job.labels"),
    "NUL in the queue, beside 0 bytes of a body and a double": (
        _job(queue="q\0", http_request__body=b"\0\0", retry_policy__multiplier=2.0),
        "job.queue",
    ),
}


@pytest.fixture
async def jobs_in_database(settings):
    engine = create_async_engine(settings.database_url)

    async def count() -> int:
        async with engine.connect() as conn:
            return int(await conn.scalar(text("SELECT count(*) FROM jobs")) or 0)

    yield count
    await engine.dispose()


@pytest.mark.parametrize(("job", "field"), CASES.values(), ids=CASES.keys())
async def test_create_job_rejects_bad_field(stub, jobs_in_database, job, field):
    before = await jobs_in_database()
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.CreateJob(api.CreateJobRequest(job=job))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(error.value)
    assert field in violations, violations
    assert error_info_reason(error.value) == "INVALID_ARGUMENT"
    assert await jobs_in_database() == before


async def test_zero_bytes_outside_strings_are_accepted(stub):
    """A 0 byte on the wire is not a NUL character unless it is in a string: a body, a double
    and an empty sub-message hold them."""
    job = _job(http_request__body=b"\0a\0", retry_policy__multiplier=2.0, retry_policy__min_backoff=seconds(0))
    assert b"\0" in job.SerializeToString()
    created = (await stub.CreateJob(api.CreateJobRequest(job=job))).job
    assert created.http_request.body == b"\0a\0"
    assert created.retry_policy.multiplier == 2.0


async def test_every_bad_field_is_reported_at_once(stub):
    job = _job(http_request__url="ftp://x", timeout=seconds(0), queue="BAD")
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.CreateJob(api.CreateJobRequest(job=job))
    assert set(field_violations(error.value)) == {"job.http_request.url", "job.timeout", "job.queue"}


@pytest.mark.parametrize(
    ("call", "field"),
    [
        ("missing job", "job"),
        ("bad request_id", "request_id"),
        ("bad job id", "id"),
        ("empty job id", "id"),
        ("negative page_size", "page_size"),
        ("garbage page_token", "page_token"),
        ("unknown state filter", "state"),
        ("bad execution id", "id"),
        ("empty list job_id", "job_id"),
        ("negative executions page_size", "page_size"),
        # Filters no later check reads: only the refusal of NUL keeps them from PostgreSQL.
        ("NUL in the queue filter", "queue"),
        ("NUL in a label filter", "labels"),
    ],
)
async def test_other_requests_reject_bad_fields(stub, call, field):
    calls = {
        "missing job": lambda: stub.CreateJob(api.CreateJobRequest()),
        "bad request_id": lambda: stub.CreateJob(api.CreateJobRequest(job=_job(), request_id="not-a-uuid")),
        "bad job id": lambda: stub.GetJob(api.GetJobRequest(id="42")),
        "empty job id": lambda: stub.DeleteJob(api.DeleteJobRequest(id="")),
        "negative page_size": lambda: stub.ListJobs(api.ListJobsRequest(page_size=-1)),
        "garbage page_token": lambda: stub.ListJobs(api.ListJobsRequest(page_token="%%%garbage")),
        "unknown state filter": lambda: stub.ListJobs(api.ListJobsRequest(state=42)),  # type: ignore[arg-type]
        "bad execution id": lambda: stub.CancelExecution(api.CancelExecutionRequest(id="nope")),
        "empty list job_id": lambda: stub.ListExecutions(api.ListExecutionsRequest()),
        "negative executions page_size": lambda: stub.ListExecutions(
            api.ListExecutionsRequest(job_id="00000000-0000-0000-0000-000000000000", page_size=-5)
        ),
        "NUL in the queue filter": lambda: stub.ListJobs(api.ListJobsRequest(queue="de\0fault")),
        "NUL in a label filter": lambda: stub.ListJobs(api.ListJobsRequest(labels={"team": "\0"}, page_size=5)),
    }
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await calls[call]()
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(error.value)


async def test_a_refused_header_value_is_never_quoted(stub):
    job = _job(http_request__headers={"X-Partner": "sk-\u20ac-c0ffee"})
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateJob(api.CreateJobRequest(job=job))
    assert "c0ffee" not in (raised.value.details() or "")
    assert "c0ffee" not in str(field_violations(raised.value))
