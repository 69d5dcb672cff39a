"""KEDA's external scaler on the api: the backlog of a queue as KEDA reads it, through the
generated client and through grpcurl (a real client that knows only what reflection tells it)."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from externalscaler import externalscaler_pb2 as keda
from externalscaler import externalscaler_pb2_grpc
from jobscheduler.v1 import queue_service_pb2 as qapi
from jobscheduler.v1 import queue_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import create, field_violations, http_job

GRPCURL = Path(sys.executable).parent / "grpcurl"


@pytest.fixture
def scaler(channel: grpc.aio.Channel) -> externalscaler_pb2_grpc.ExternalScalerAsyncStub:
    return externalscaler_pb2_grpc.ExternalScalerStub(channel)


def _ref(**metadata: str) -> keda.ScaledObjectRef:
    return keda.ScaledObjectRef(name="workers", namespace="jobs", scalerMetadata=metadata)


async def test_the_backlog_counts_what_is_due_and_running_on_the_queue(stub, scaler, target):
    queue = f"scale-{uuid.uuid4().hex[:8]}"
    for _ in range(3):
        await create(stub, http_job(target.url("/ok/scale"), queue=queue))
    later = Timestamp()
    later.FromDatetime(datetime.now(UTC) + timedelta(hours=1))
    await create(stub, http_job(target.url("/ok/scale"), queue=queue, schedule=pb.Schedule(run_at=later)))

    spec = await scaler.GetMetricSpec(_ref(queue=queue, targetPerWorker="2"))
    [metric] = spec.metricSpecs
    assert (metric.metricName, metric.targetSize, metric.targetSizeFloat) == (f"jobscheduler-{queue}-backlog", 2, 2.0)

    metrics = await scaler.GetMetrics(
        keda.GetMetricsRequest(scaledObjectRef=_ref(queue=queue), metricName=metric.metricName)
    )
    [value] = metrics.metricValues
    # Three due now; the run_at job an hour out is not backlog yet (dueWithinSeconds: 30).
    assert (value.metricName, value.metricValue, value.metricValueFloat) == (metric.metricName, 3, 3.0)
    assert (await scaler.IsActive(_ref(queue=queue))).result is True
    assert (await scaler.IsActive(_ref(queue=f"{queue}-empty"))).result is False

    stream = scaler.StreamIsActive(_ref(queue=queue))
    first = await asyncio.wait_for(stream.read(), 5)
    stream.cancel()
    assert first.result is True


async def test_the_backlog_counts_no_more_than_may_run_at_once(channel, stub, scaler, target):
    queue = f"scale-{uuid.uuid4().hex[:8]}"
    for _ in range(5):
        await create(stub, http_job(target.url("/ok/scale"), queue=queue))
    limits = qapi.RateLimits(max_concurrent_dispatches=2)
    queues = queue_service_pb2_grpc.QueueServiceStub(channel)
    await queues.UpdateQueue(qapi.UpdateQueueRequest(queue=qapi.Queue(name=queue, rate_limits=limits)))
    request = keda.GetMetricsRequest(scaledObjectRef=_ref(queue=queue), metricName=f"jobscheduler-{queue}-backlog")
    [value] = (await scaler.GetMetrics(request)).metricValues
    assert value.metricValue == 2  # five due, two may run at once: two workers' share, not five
    recommendation = await queues.GetScalingRecommendation(qapi.GetScalingRecommendationRequest(queue=queue))
    assert recommendation.backlog == 2


async def test_the_backlog_counts_each_flow_key_at_most_its_max_concurrent(channel, stub, scaler, target):
    queue = f"scale-{uuid.uuid4().hex[:8]}"
    later = Timestamp()
    later.FromDatetime(datetime.now(UTC) + timedelta(seconds=20))  # due within 30 s: backlog, not run yet
    # The latest job of key "a" says 3 at once (its earlier jobs said 1); "b" has no limit.
    for limit in (1, 1, 1, 1, 3):
        flow = pb.FlowControl(key="a", max_concurrent=limit)
        await create(
            stub, http_job(target.url("/ok/scale"), queue=queue, flow_control=flow, schedule=pb.Schedule(run_at=later))
        )
    for _ in range(2):
        flow = pb.FlowControl(key="b")
        await create(
            stub, http_job(target.url("/ok/scale"), queue=queue, flow_control=flow, schedule=pb.Schedule(run_at=later))
        )
    await create(stub, http_job(target.url("/ok/scale"), queue=queue, schedule=pb.Schedule(run_at=later)))
    request = keda.GetMetricsRequest(scaledObjectRef=_ref(queue=queue), metricName=f"jobscheduler-{queue}-backlog")
    [value] = (await scaler.GetMetrics(request)).metricValues
    assert value.metricValue == 3 + 2 + 1


@pytest.mark.parametrize(
    "metadata",
    [
        {"targetPerWorker": "lots"},
        # inf and 1e300 answered INTERNAL: round(inf) and timedelta(seconds=1e300) overflow.
        {"targetPerWorker": "inf"},
        {"targetPerWorker": "1e300"},
        {"dueWithinSeconds": "inf"},
        {"dueWithinSeconds": "1e300"},
        {"dueWithinSeconds": "nan"},
        {"queue": "Bad Queue"},
    ],
)
async def test_bad_trigger_metadata_is_invalid_argument_naming_the_key(scaler, metadata):
    [key] = metadata
    for call in (
        scaler.GetMetricSpec(_ref(**metadata)),
        scaler.IsActive(_ref(**metadata)),
        scaler.GetMetrics(keda.GetMetricsRequest(scaledObjectRef=_ref(**metadata))),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"scalerMetadata.{key}" in field_violations(raised.value)


async def test_grpcurl_reads_the_metric_through_reflection(api, stub, target):
    queue = f"scale-curl-{uuid.uuid4().hex[:8]}"
    await create(stub, http_job(target.url("/ok/scale"), queue=queue))
    request = {"scaledObjectRef": {"scalerMetadata": {"queue": queue}}, "metricName": f"jobscheduler-{queue}-backlog"}
    process = await asyncio.create_subprocess_exec(
        str(GRPCURL), "-plaintext", "-d", json.dumps(request), f"127.0.0.1:{api.port}",
        "externalscaler.ExternalScaler/GetMetrics",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, out.decode()
    [value] = json.loads(out)["metricValues"]
    assert value["metricValueFloat"] == 1
