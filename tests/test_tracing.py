"""OpenTelemetry: an api and a worker process export their spans over OTLP/gRPC to a real
receiver, and a caller's trace continues through the job to the target."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from jobs_common.settings import Settings
from jobscheduler.v1 import job_service_pb2 as api_pb
from jobscheduler.v1 import job_service_pb2_grpc
from tests.support.jobs import create, http_job, wait_terminal
from tests.support.processes import ChildProcess, settings_env
from tests.support.services import free_port
from tests.support.target import TargetServer

CALLER_TRACE = uuid.uuid4().hex
CALLER_SPAN = uuid.uuid4().hex[:16]
CALLER_TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace receiver that keeps every span with its resource's service name."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, trace_pb2.Span]] = []

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: object
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            service = next(a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name")
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend((service, span) for span in scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def in_trace(self, trace_id: str) -> list[tuple[str, trace_pb2.Span]]:
        return [(service, span) for service, span in self.spans if span.trace_id.hex() == trace_id]


@pytest.fixture
async def collector() -> AsyncIterator[tuple[Collector, int]]:
    server = grpc.aio.server()
    receiver = Collector()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield receiver, port
    await server.stop(0)


def _attributes(span: trace_pb2.Span) -> dict[str, object]:
    values: dict[str, object] = {}
    for attribute in span.attributes:
        kind = attribute.value.WhichOneof("value")
        values[attribute.key] = getattr(attribute.value, kind) if kind else None
    return values


def _traced_env(settings: Settings, collector_port: int, **overrides: str) -> dict[str, str]:
    return settings_env(
        settings,
        TRACING_ENABLED="true",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector_port}",
        OTEL_EXPORTER_OTLP_INSECURE="true",
        OTEL_BSP_SCHEDULE_DELAY="100",
        LOG_FORMAT="json",
        **overrides,
    )


async def _wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.1)


@pytest.mark.usefixtures("api")  # the session's database, migrated
async def test_a_callers_trace_runs_through_the_rpc_the_execution_and_each_attempt_to_the_target(
    settings: Settings, target: TargetServer, collector: tuple[Collector, int], tmp_path: Path
):
    receiver, collector_port = collector
    key = uuid.uuid4().hex[:8]
    queue = f"traced-{key}"
    api_port = free_port()
    api = ChildProcess(
        "jobs_api",
        _traced_env(settings, collector_port, GRPC_PORT=str(api_port), SCHEDULER_ENABLED="false"),
        tmp_path / "api.log",
    )
    worker = ChildProcess(
        "jobs_worker",
        _traced_env(settings, collector_port, WORKER_QUEUE=queue, WORKER_HEALTH_FILE=str(tmp_path / "health")),
        tmp_path / "worker.log",
    )
    try:
        await api.wait_for_log("api listening")
        await worker.wait_for_log("ready on queue")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{api_port}") as channel:
            stub = job_service_pb2_grpc.JobServiceStub(channel)
            path = f"/flaky/{key}"
            job = await stub.CreateJob(
                api_pb.CreateJobRequest(job=http_job(target.url(f"{path}?fail=1"), queue=queue)),
                metadata=(("traceparent", CALLER_TRACEPARENT),),
            )
            execution = await wait_terminal(stub, job.job.last_execution.id, timeout=20)
        assert execution.attempt_count == 2

        received = target.received(path)
        assert len(received) == 2
        sent = [request.headers["traceparent"].split("-") for request in received]
        assert [parts[1] for parts in sent] == [CALLER_TRACE, CALLER_TRACE]
        attempt_span_ids = [parts[2] for parts in sent]
        assert len(set(attempt_span_ids)) == 2

        await _wait_for(lambda: any(s.name == "jobscheduler.execution" for _, s in receiver.spans), timeout=10)
        spans = receiver.in_trace(CALLER_TRACE)
        by_name: dict[str, list[tuple[str, trace_pb2.Span]]] = {}
        for service, span in spans:
            by_name.setdefault(span.name, []).append((service, span))

        [(rpc_service, rpc)] = by_name["jobscheduler.v1.JobService/CreateJob"]
        assert rpc_service == "job-scheduler-api"
        assert rpc.kind == trace_pb2.Span.SPAN_KIND_SERVER
        assert rpc.parent_span_id.hex() == CALLER_SPAN
        assert _attributes(rpc)["rpc.grpc.status_code"] == 0

        [(execution_service, execution_span)] = by_name["jobscheduler.execution"]
        assert execution_service == "job-scheduler-worker"
        assert execution_span.parent_span_id == rpc.span_id
        assert _attributes(execution_span)["jobscheduler.execution.state"] == "SUCCEEDED"
        assert _attributes(execution_span)["jobscheduler.execution.id"] == execution.id
        assert execution_span.status.code != trace_pb2.Status.STATUS_CODE_ERROR

        attempts = sorted((span for _, span in by_name["POST"]), key=lambda span: span.start_time_unix_nano)
        assert [_attributes(span)["jobscheduler.attempt"] for span in attempts] == [1, 2]
        assert [span.span_id.hex() for span in attempts] == attempt_span_ids
        assert all(span.parent_span_id == execution_span.span_id for span in attempts)
        assert all(span.kind == trace_pb2.Span.SPAN_KIND_CLIENT for span in attempts)
        first, second = (_attributes(span) for span in attempts)
        assert first["http.response.status_code"] == 500
        assert first["error.type"] == "500"
        assert attempts[0].status.code == trace_pb2.Status.STATUS_CODE_ERROR
        assert second["http.response.status_code"] == 200
        assert "error.type" not in second
        # Query values can be credentials: masked unless TELEMETRY_URL_QUERIES.
        assert second["url.full"] == target.url(f"{path}?fail=REDACTED")
        # The execution spans its attempts.
        assert execution_span.start_time_unix_nano <= attempts[0].start_time_unix_nano
        assert execution_span.end_time_unix_nano >= attempts[1].end_time_unix_nano
    finally:
        await worker.stop()
        await api.stop()

    # Every line the worker logged about this execution carries the caller's trace id.
    lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    about = [line for line in lines if line.get("execution_id") == execution.id]
    assert about, "the worker logged nothing about the execution"
    assert {line.get("trace_id") for line in about} == {CALLER_TRACE}
    assert api.process.returncode == 0
    assert worker.process.returncode == 0


@pytest.mark.usefixtures("worker")
async def test_with_tracing_off_a_callers_traceparent_reaches_the_target_unchanged(
    stub: job_service_pb2_grpc.JobServiceAsyncStub, target: TargetServer
):
    key = uuid.uuid4().hex[:8]
    traced = await stub.CreateJob(
        api_pb.CreateJobRequest(job=http_job(target.url(f"/ok/traced-{key}"))),
        metadata=(("traceparent", CALLER_TRACEPARENT),),
    )
    untraced = await create(stub, http_job(target.url(f"/ok/untraced-{key}")))
    await wait_terminal(stub, traced.job.last_execution.id)
    await wait_terminal(stub, untraced.last_execution.id)
    [request] = target.received(f"/ok/traced-{key}")
    assert request.headers["traceparent"] == CALLER_TRACEPARENT
    [request] = target.received(f"/ok/untraced-{key}")
    assert "traceparent" not in {name.lower() for name in request.headers}
