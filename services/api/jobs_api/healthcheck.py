"""``python -m jobs_api.healthcheck``: exit 0 while the local api answers SERVING.

Used by the container HEALTHCHECK; asks grpc.health.v1 on 127.0.0.1:GRPC_HEALTH_PORT when it is
set (the plaintext health-only port), else on GRPC_PORT, which must then be plaintext.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from jobs_common.settings import Settings


def main() -> int:
    settings = Settings()
    if settings.grpc_tls_cert_file and not settings.grpc_health_port:
        print("unhealthy: GRPC_PORT speaks TLS; set GRPC_HEALTH_PORT for a plaintext health-only port")
        return 1
    port = settings.grpc_health_port or settings.grpc_port
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
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
