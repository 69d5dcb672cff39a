"""Property-based fuzzing of the api (hypothesis): thousands of generated CreateJob,
BatchCreateJobs, ListJobs and UpdateJob requests (huge or odd strings, extreme numbers, bad cron
strings and time zones, bad enums, bad field masks) and raw bytes protobuf cannot decode. None
may answer INTERNAL or UNKNOWN, and every INVALID_ARGUMENT must carry a google.rpc.BadRequest
naming the field.

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

from jobs_common.settings import Settings
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import job_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb
from tests.support import services
from tests.support.processes import ChildProcess, settings_env

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
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


def _call(method: object, request: object) -> None:
    try:
        method(request, timeout=10)  # type: ignore[operator]
    except grpc.RpcError as error:
        _acceptable(error)


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
)
def test_list_jobs_never_fails_unexpectedly(channel, page_size, page_token, state, queue, labels, kind):
    request = api.ListJobsRequest(page_size=page_size, page_token=page_token, state=state, queue=queue, kind=kind)
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
            api.CreateJobRequest(job=pb.Job(http_request=pb.HttpRequest(url="https://example.com/u")))
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
    return call(request, timeout=10)
