"""``python -m bench.grpc_floor``: what grpcio's asyncio server costs per CreateJob with nothing
behind it, the floor under the api's own figure.

A bare ``grpc.aio`` server (its own process, no interceptors) answers each CreateJob with the
request's job and an id; the client is make bench's (one channel, ``--concurrency`` calls in
flight, the same job). It prints calls a second and the server's CPU per call.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from typing import Any

import grpc

from bench.__main__ import Cpu, _create_many
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import job_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb
from tests.support import services

JOB_SERVICE = api.DESCRIPTOR.services_by_name["JobService"].full_name
_URL = "http://127.0.0.1:9/hit"  # never called: the server only answers


async def _create_job(request: api.CreateJobRequest, context: Any) -> api.CreateJobResponse:
    job = pb.Job()
    job.CopyFrom(request.job)
    job.id = "00000000-0000-4000-8000-000000000000"
    return api.CreateJobResponse(job=job)


async def _serve(port: int) -> None:
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(
        _create_job,
        request_deserializer=api.CreateJobRequest.FromString,
        response_serializer=api.CreateJobResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(JOB_SERVICE, {"CreateJob": handler})])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def _create_many_seconds(port: int, count: int, concurrency: int) -> float:
    """Seconds for ``count`` CreateJobs, ``concurrency`` in flight on one channel (make bench's
    client)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await channel.channel_ready()
        started = time.perf_counter()
        await _create_many([job_service_pb2_grpc.JobServiceStub(channel)], count, concurrency, _URL, "floor")
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the server process's port
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve))
        return
    port = services.free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.grpc_floor", "--serve", str(port)])
    try:
        asyncio.run(_create_many_seconds(port, 2_000, args.concurrency))  # warm-up, not measured
        cpu = Cpu(server.pid, ())
        before = cpu.seconds()
        seconds = asyncio.run(_create_many_seconds(port, args.calls, args.concurrency))
        used = cpu.seconds() - before
    finally:
        server.terminate()
        server.wait()
    print(
        f"bare grpc.aio server: {args.calls / seconds:,.0f} CreateJobs/s ({args.concurrency} in flight),"
        f" {used * 1000 / args.calls:.3f} ms of server CPU per call"
    )


if __name__ == "__main__":
    main()
