"""``python -m jobs_api.healthcheck``: exit 0 while the local api answers SERVING.

Used by the container HEALTHCHECK; asks grpc.health.v1 on 127.0.0.1:GRPC_PORT.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from jobs_common.settings import Settings


def main() -> int:
    settings = Settings()
    with grpc.insecure_channel(f"127.0.0.1:{settings.grpc_port}") as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
        except grpc.RpcError as exc:
            print(f"unhealthy: {exc}")
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(status)
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
