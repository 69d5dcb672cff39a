"""The api's listeners: the gRPC port, plaintext or TLS (mutual when a client CA is set), and the
optional plaintext health-only port for probes that cannot speak TLS. Several api processes share
them only when GRPC_REUSE_PORT is on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from jobs_common.settings import Settings

__all__ = ["add_api_port", "health_only_server", "server_options"]


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """A request larger than GRPC_MAX_MESSAGE_BYTES answers RESOURCE_EXHAUSTED before any handler.
    The port is shared with other processes only when GRPC_REUSE_PORT says so (gRPC's own default
    on Linux shares it with any process of the same user)."""
    return [
        ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
        ("grpc.so_reuseport", 1 if settings.grpc_reuse_port else 0),
    ]


def _bind(bind: Callable[[], int], settings: Settings, port: int) -> int:
    """``bind()``, with what to do about a port in use.

    Raises:
        OSError: the port cannot be bound.
    """
    try:
        return bind()
    except RuntimeError as error:
        shared = "" if settings.grpc_reuse_port else "; to run several api processes on it, set GRPC_REUSE_PORT=true"
        raise OSError(f"cannot listen on {settings.grpc_host}:{port}: in use or not an address here{shared}") from error


def add_api_port(server: grpc.aio.Server, settings: Settings) -> tuple[int, str]:
    """Binds GRPC_HOST:GRPC_PORT; returns the port and what protects it (for the start-up line).

    Raises:
        OSError: a certificate, key or CA file cannot be read.
    """
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    if not settings.grpc_tls_cert_file:
        return _bind(lambda: server.add_insecure_port(address), settings, settings.grpc_port), "plaintext"
    client_ca = settings.grpc_tls_client_ca_file
    credentials = grpc.ssl_server_credentials(
        [(Path(settings.grpc_tls_key_file).read_bytes(), Path(settings.grpc_tls_cert_file).read_bytes())],
        root_certificates=Path(client_ca).read_bytes() if client_ca else None,
        require_client_auth=bool(client_ca),
    )
    bound = _bind(lambda: server.add_secure_port(address, credentials), settings, settings.grpc_port)
    return bound, "mutual TLS" if client_ca else "TLS"


def health_only_server(settings: Settings, servicer: health.aio.HealthServicer) -> tuple[grpc.aio.Server, int] | None:
    """A plaintext server with grpc.health.v1 alone on GRPC_HEALTH_PORT, or None when it is 0.
    Reflection there describes that one service, so grpcurl can call it without .proto files."""
    if not settings.grpc_health_port:
        return None
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1 if settings.grpc_reuse_port else 0)])
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflection.enable_server_reflection([health_pb2.DESCRIPTOR.services_by_name["Health"].full_name], server)
    address = f"{settings.grpc_host}:{settings.grpc_health_port}"
    return server, _bind(lambda: server.add_insecure_port(address), settings, settings.grpc_health_port)
