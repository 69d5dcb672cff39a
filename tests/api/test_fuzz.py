"""Property-based fuzzing of the api (hypothesis): thousands of generated CreateJob,
BatchCreateJobs, ListJobs and UpdateJob requests (huge or odd strings, extreme numbers, bad cron
strings and time zones, bad enums, bad field masks, views) and raw bytes protobuf cannot decode.
None may answer INTERNAL or UNKNOWN, and every INVALID_ARGUMENT must carry a google.rpc.BadRequest
naming the field. The requests come from one tenant's writer; a second tenant's admin fuzzes every
call that names a job, an execution or a filter at the first tenant's job, and must learn nothing
of it and change nothing.

The api is a real process on a database and Redis index of its own, without its scheduler, so
the jobs the fuzzer creates touch nothing else. FUZZ_EXAMPLES sets the examples per property
(CI's default is small; the closing note reports a long run)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from jobs_common.settings import Settings
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import job_service_pb2_grpc, queue_service_pb2, queue_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb
from tests.support import services
from tests.support.processes import ChildProcess, settings_env

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
# Two tenants: the fuzzer's requests come from acme's writer; globex's admin attacks acme's job.
ACME = (("authorization", "Bearer fuzz-acme-writer-token-000"),)
GLOBEX = (("authorization", "Bearer fuzz-globex-admin-token-00"),)
API_TOKENS = "acme@acme/writer:fuzz-acme-writer-token-000,globex@globex/admin:fuzz-globex-admin-token-00"
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
# Python strings protobuf can hold (no lone surrogates), from tame to hostile.
TEXT = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=40),
    st.sampled_from(["", " ", "*", "default", "http://", "https://example.com/", "* * * * *", "@daily", "UTC"]),
    st.text(st.characters(exclude_categories=["Cs"]), min_size=3000, max_size=5000),
)
URLS = st.one_of(
    TEXT,
    st.builds(lambda host, path: f"https://{host}/{path}", TEXT, TEXT),
    st.sampled_from(["http://127.0.0.1/", "http://[::1]/", "http://0x7f.1/", "https://u:p@example.com/", "ftp://x/"]),
)


@st.composite
def jobs(draw: st.DrawFn) -> pb.Job:
    job = pb.Job()
    request = job.http_request
    request.url = draw(URLS)
    request.method = draw(st.integers(-3, 12))  # type: ignore[assignment]  # unknown enum numbers too
    request.headers.update(draw(st.dictionaries(TEXT, TEXT, max_size=4)))
    request.body = draw(st.one_of(st.binary(max_size=64), st.just(b"x" * (1024 * 1024 + 1))))
    request.follow_redirects = draw(st.booleans())
    request.secret_headers.extend(draw(st.lists(TEXT, max_size=3)))
    request.signing.secrets.extend(draw(st.lists(st.one_of(TEXT, st.just("whsec_" + "A" * 40)), max_size=6)))
    request.signing.generate_secret = draw(st.booleans())
    if draw(st.booleans()):
        job.timeout.seconds, job.timeout.nanos = draw(INT64), draw(INT32)
    policy = job.retry_policy
    if draw(st.booleans()):
        policy.max_attempts = draw(INT32)
    if draw(st.booleans()):
        policy.min_backoff.seconds, policy.min_backoff.nanos = draw(INT64), draw(INT32)
    if draw(st.booleans()):
        policy.max_backoff.seconds = draw(INT64)
    if draw(st.booleans()):
        policy.multiplier = draw(st.floats(allow_nan=True, allow_infinity=True))
    policy.retry_status_codes.extend(draw(st.lists(INT32, max_size=4)))
    schedule = job.schedule
    which = draw(st.sampled_from(["none", "run_at", "cron", "interval"]))
    if which == "run_at":
        schedule.run_at.seconds, schedule.run_at.nanos = draw(INT64), draw(INT32)
    elif which == "cron":
        schedule.cron.expression = draw(
            st.one_of(TEXT, st.sampled_from(["*/5 * * * *", "0 9 * * MON-FRI", "61 * * * *"]))
        )
        schedule.cron.time_zone = draw(st.one_of(TEXT, st.sampled_from(["Europe/Berlin", "Mars/Base", "../etc"])))
    elif which == "interval":
        schedule.interval.seconds, schedule.interval.nanos = draw(INT64), draw(INT32)
    if which in ("cron", "interval"):
        schedule.overlap_policy = draw(st.integers(-2, 9))  # type: ignore[assignment]
        schedule.catch_up_policy = draw(st.integers(-2, 9))  # type: ignore[assignment]
        schedule.catch_up_limit = draw(INT32)
        schedule.max_runs = draw(INT32)
        if draw(st.booleans()):
            schedule.start_time.seconds = draw(INT64)
        if draw(st.booleans()):
            schedule.end_time.seconds = draw(INT64)
    job.queue = draw(TEXT)
    job.labels.update(draw(st.dictionaries(TEXT, TEXT, max_size=3)))
    return job


@pytest.fixture(scope="module")
async def fuzzed_api(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    database = await services.create_database()
    redis_db = await services.claim_redis_db(f"fuzz-{uuid.uuid4().hex}")
    port = services.free_port()
    own = settings.model_copy(
        update={
            "database_url": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
            "redis_db": redis_db,
            "grpc_port": port,
            "scheduler_enabled": False,
            "reconciler_enabled": False,
            "api_tokens": SecretStr(API_TOKENS),
        }
    )
    log: Path = tmp_path_factory.mktemp("fuzz") / "api.log"
    process = ChildProcess("jobs_api", settings_env(own, DATABASE_AUTO_CREATE="false"), log)
    try:
        await process.wait_for_log("api listening")
        yield f"127.0.0.1:{port}"
    finally:
        await process.stop()
        await services.release_redis_db(redis_db)
        await services.drop_database(database)
    assert "Traceback" not in process.log(), "the api logged an unexpected error"


@pytest.fixture(scope="module")
def channel(fuzzed_api: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(fuzzed_api) as channel:
        yield channel


def _acceptable(error: grpc.RpcError) -> None:
    assert isinstance(error, grpc.Call)
    code = error.code()
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), error.details()
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        status = rpc_status.from_call(error)
        assert status is not None, "INVALID_ARGUMENT without a google.rpc.Status"
        fields = _violated_fields(error)
        assert fields, f"INVALID_ARGUMENT without a BadRequest: {error.details()}"
        assert all(fields), "a field violation names no field"


def _violated_fields(error: grpc.Call) -> list[str]:
    status = rpc_status.from_call(error)
    fields: list[str] = []
    for detail in status.details if status is not None else ():
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            fields += [v.field for v in bad_request.field_violations]
    return fields


def _call(method: object, request: object, caller: tuple[tuple[str, str], ...] = ACME) -> object | None:
    """The answer, or None for an acceptable error."""
    try:
        return method(request, timeout=10, metadata=caller)  # type: ignore[operator]
    except grpc.RpcError as error:
        _acceptable(error)
        return None


@FUZZ
@given(job=jobs(), request_id=st.one_of(st.just(""), TEXT, st.uuids().map(str)))
def test_create_job_never_fails_unexpectedly(channel: grpc.Channel, job: pb.Job, request_id: str):
    _call(job_service_pb2_grpc.JobServiceStub(channel).CreateJob, api.CreateJobRequest(job=job, request_id=request_id))


@FUZZ
@given(batch=st.lists(st.builds(api.CreateJobRequest, job=jobs(), request_id=st.just("")), max_size=3))
def test_batch_create_jobs_never_fails_unexpectedly(channel: grpc.Channel, batch: list[api.CreateJobRequest]):
    _call(job_service_pb2_grpc.JobServiceStub(channel).BatchCreateJobs, api.BatchCreateJobsRequest(requests=batch))


@FUZZ
@given(
    page_size=INT32,
    page_token=st.one_of(TEXT, st.binary(max_size=64).map(lambda b: b.hex())),
    state=st.integers(-2, 9),
    queue=TEXT,
    labels=st.dictionaries(TEXT, TEXT, max_size=3),
    kind=st.integers(-2, 5),
    view=st.integers(-2, 5),
)
def test_list_jobs_never_fails_unexpectedly(channel, page_size, page_token, state, queue, labels, kind, view):
    request = api.ListJobsRequest(
        page_size=page_size, page_token=page_token, state=state, queue=queue, kind=kind, view=view
    )
    request.labels.update(labels)
    _call(job_service_pb2_grpc.JobServiceStub(channel).ListJobs, request)


@FUZZ
@given(
    job=jobs(),
    paths=st.lists(
        st.one_of(
            TEXT,
            st.sampled_from(
                [
                    "*",
                    "http_request",
                    "http_request.url",
                    "schedule",
                    "labels",
                    "id",
                    "state",
                    "schedule.cron.expression",
                ]
            ),
        ),
        max_size=4,
    ),
    existing=st.booleans(),
)
def test_update_job_never_fails_unexpectedly(channel: grpc.Channel, job: pb.Job, paths: list[str], existing: bool):
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    if existing:
        target = stub.CreateJob(
            api.CreateJobRequest(job=pb.Job(http_request=pb.HttpRequest(url="https://example.com/u"))),
            metadata=ACME,
        )
        job.id = target.job.id
    else:
        job.id = str(uuid.uuid4()) if paths else job.queue
    _call(stub.UpdateJob, api.UpdateJobRequest(job=job, update_mask=FieldMask(paths=paths)))


@FUZZ
@given(prefix=st.binary(max_size=200), bad=st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"]))
def test_undecodable_requests_are_invalid_arguments(channel: grpc.Channel, prefix: bytes, bad: bytes):
    # A job whose URL, or a header value, is not UTF-8: INVALID_ARGUMENT naming that field.
    url = b"\x12" + bytes([len(bad) + 4]) + b"http" + bad
    header = b"\x1a" + bytes([len(bad) + 8]) + b"\x0a\x01k\x12" + bytes([len(bad) + 2]) + b"v" + bad + b"v"
    for body, field in ((url, "job.http_request.url"), (header, "job.http_request.headers")):
        job = b"\x12" + bytes([len(body)]) + body
        request = b"\x0a" + bytes([len(job)]) + job
        for method in ("CreateJob", "UpdateJob"):
            with pytest.raises(grpc.RpcError) as refused:
                _raw_call(channel, method, request)
            _acceptable(refused.value)
            assert isinstance(refused.value, grpc.Call)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert _violated_fields(refused.value) == [field]
    # Random bytes: whatever protobuf makes of them, never INTERNAL or UNKNOWN.
    for method in ("CreateJob", "ListJobs", "GetJob", "UpdateJob"):
        try:
            _raw_call(channel, method, prefix)
        except grpc.RpcError as error:
            _acceptable(error)


def _raw_call(channel: grpc.Channel, method: str, request: bytes) -> bytes:
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(f"/jobscheduler.v1.JobService/{method}")
    return call(request, timeout=10, metadata=ACME)


@pytest.fixture(scope="module")
def victim(channel: grpc.Channel) -> tuple[pb.Job, str]:
    """Acme's recurring job (ticks only when run) and its execution, as acme reads them."""
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    job = pb.Job(http_request=pb.HttpRequest(url="https://example.com/acme"), queue="acme-fuzz")
    job.http_request.headers["Authorization"] = "Bearer acme-target-credential"
    job.schedule.interval.seconds = 3600
    made = stub.CreateJob(api.CreateJobRequest(job=job), metadata=ACME).job
    ran = stub.RunJob(api.RunJobRequest(id=made.id), metadata=ACME)
    return stub.GetJob(api.GetJobRequest(id=made.id), metadata=ACME).job, ran.execution.id


@FUZZ
@given(
    job=jobs(),
    paths=st.lists(st.sampled_from(["http_request.url", "http_request.headers", "labels", "schedule", "queue"])),
    page_size=INT32,
    error_kind=st.integers(-2, 12),
)
def test_another_tenant_learns_nothing_of_a_job_and_changes_nothing(
    channel: grpc.Channel, victim: tuple[pb.Job, str], job: pb.Job, paths: list[str], page_size: int, error_kind: int
):
    acme_job, execution_id = victim
    jobs_stub = job_service_pb2_grpc.JobServiceStub(channel)
    queues = queue_service_pb2_grpc.QueueServiceStub(channel)
    job.id = acme_job.id
    by_id = api.GetJobRequest(id=acme_job.id)
    dead_letters = queue_service_pb2.DeadLetterFilter(job_id=acme_job.id, queue=job.queue, error_kind=error_kind)  # type: ignore[arg-type]
    calls: list[tuple[object, object]] = [
        (jobs_stub.GetJob, by_id),
        (jobs_stub.UpdateJob, api.UpdateJobRequest(job=job, update_mask=FieldMask(paths=paths))),
        (jobs_stub.PauseJob, api.PauseJobRequest(id=acme_job.id)),
        (jobs_stub.ResumeJob, api.ResumeJobRequest(id=acme_job.id)),
        (jobs_stub.RunJob, api.RunJobRequest(id=acme_job.id)),
        (jobs_stub.GetExecution, api.GetExecutionRequest(id=execution_id)),
        (jobs_stub.ListExecutions, api.ListExecutionsRequest(job_id=acme_job.id, page_size=page_size)),
        (jobs_stub.CancelExecution, api.CancelExecutionRequest(id=execution_id)),
        (jobs_stub.ReplayExecution, api.ReplayExecutionRequest(id=execution_id)),
        (jobs_stub.DeleteJob, api.DeleteJobRequest(id=acme_job.id)),
    ]
    for method, request in calls:
        with pytest.raises(grpc.RpcError) as refused:
            method(request, timeout=10, metadata=GLOBEX)  # type: ignore[operator]
        _acceptable(refused.value)
        assert isinstance(refused.value, grpc.Call)
        # NOT_FOUND exactly as for an unknown id; INVALID_ARGUMENT only for the fuzzed fields.
        code = refused.value.code()
        assert code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), refused.value.details()
    listings = [
        _call(jobs_stub.ListJobs, api.ListJobsRequest(page_size=page_size, queue=job.queue), GLOBEX),
        _call(queues.ListDeadLetters, queue_service_pb2.ListDeadLettersRequest(filter=dead_letters), GLOBEX),
        _call(queues.PurgeDeadLetters, queue_service_pb2.PurgeDeadLettersRequest(filter=dead_letters), GLOBEX),
    ]
    for answer in listings:
        assert answer is None or (acme_job.id not in str(answer) and execution_id not in str(answer))
    # Acme's job and its execution are as they were.
    assert jobs_stub.GetJob(by_id, metadata=ACME).job == acme_job
    execution = jobs_stub.GetExecution(api.GetExecutionRequest(id=execution_id), metadata=ACME).execution
    assert execution.state == pb.EXECUTION_STATE_QUEUED
