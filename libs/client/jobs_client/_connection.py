"""Where the API is and how to reach it: address, bearer token, TLS files, from arguments or the
environment, and the channels made from them (with gRPC's own retries on UNAVAILABLE)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

__all__ = ["DEFAULT_ADDRESS", "RETRIED_METHODS", "Connection"]

DEFAULT_ADDRESS = "localhost:50051"
# Retried by the channel when the API answers UNAVAILABLE: every call whose repetition changes
# nothing more than the first did. CreateJob and BatchCreateJobs qualify because the client
# always sends a request_id; RunJob does not (each run is another execution).
RETRIED_METHODS: dict[str, tuple[str, ...]] = {
    "jobscheduler.v1.JobService": (
        "CreateJob",
        "BatchCreateJobs",
        "GetJob",
        "ListJobs",
        "UpdateJob",
        "PauseJob",
        "ResumeJob",
        "DeleteJob",
        "GetExecution",
        "ListExecutions",
        "CancelExecution",
        "ReplayExecution",
        "WatchJob",
    ),
    "jobscheduler.v1.QueueService": (
        "ListQueues",
        "GetQueueStats",
        "PauseQueue",
        "ResumeQueue",
        "UpdateQueue",
        "ListWorkers",
        "GetScalingRecommendation",
        "ListDeadLetters",
    ),
}
_RETRY_POLICY = {
    "maxAttempts": 5,
    "initialBackoff": "0.1s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


def _service_config() -> str:
    names = [
        {"service": service, "method": method} for service, methods in RETRIED_METHODS.items() for method in methods
    ]
    return json.dumps({"methodConfig": [{"name": names, "retryPolicy": _RETRY_POLICY}]})


@dataclass(frozen=True, slots=True)
class Connection:
    """How to reach the API. ``from_env`` reads ``JOBS_API_ADDRESS`` (default
    ``localhost:50051``), ``JOBS_API_TOKEN`` and, for TLS, ``JOBS_API_TLS_CA_FILE`` (the CA of
    the server's certificate; TLS on when set) with ``JOBS_API_TLS_CERT_FILE`` and
    ``JOBS_API_TLS_KEY_FILE`` for mutual TLS."""

    address: str = DEFAULT_ADDRESS
    token: str | None = None
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None

    @classmethod
    def from_env(cls, **overrides: str | None) -> Connection:
        """The environment's connection, with the arguments given (not None) taking precedence."""
        values: dict[str, str | None] = {
            "address": os.environ.get("JOBS_API_ADDRESS") or DEFAULT_ADDRESS,
            "token": os.environ.get("JOBS_API_TOKEN") or None,
            "tls_ca_file": os.environ.get("JOBS_API_TLS_CA_FILE") or None,
            "tls_cert_file": os.environ.get("JOBS_API_TLS_CERT_FILE") or None,
            "tls_key_file": os.environ.get("JOBS_API_TLS_KEY_FILE") or None,
        }
        values.update({name: value for name, value in overrides.items() if value is not None})
        address = values.pop("address") or DEFAULT_ADDRESS
        return cls(address, **values)

    @property
    def options(self) -> list[tuple[str, Any]]:
        return [("grpc.enable_retries", 1), ("grpc.service_config", _service_config())]

    def _credentials(self) -> grpc.ChannelCredentials | None:
        if self.tls_ca_file is None:
            if self.tls_cert_file or self.tls_key_file:
                raise ValueError("a client certificate needs the server's CA too (JOBS_API_TLS_CA_FILE)")
            return None
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("mutual TLS needs both JOBS_API_TLS_CERT_FILE and JOBS_API_TLS_KEY_FILE")
        return grpc.ssl_channel_credentials(
            root_certificates=Path(self.tls_ca_file).read_bytes(),
            private_key=Path(self.tls_key_file).read_bytes() if self.tls_key_file else None,
            certificate_chain=Path(self.tls_cert_file).read_bytes() if self.tls_cert_file else None,
        )

    def async_channel(self) -> grpc.aio.Channel:
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (
            [_AsyncUnaryToken(self.token), _AsyncStreamToken(self.token)] if self.token else []
        )
        credentials = self._credentials()
        if credentials is None:
            return grpc.aio.insecure_channel(self.address, options=self.options, interceptors=interceptors)
        return grpc.aio.secure_channel(self.address, credentials, options=self.options, interceptors=interceptors)

    def sync_channel(self) -> grpc.Channel:
        credentials = self._credentials()
        if credentials is None:
            channel = grpc.insecure_channel(self.address, options=self.options)
        else:
            channel = grpc.secure_channel(self.address, credentials, options=self.options)
        return grpc.intercept_channel(channel, _SyncToken(self.token)) if self.token else channel


def _token_metadata(token: str, metadata: Any) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}"), *(metadata or ())]


def _async_details(details: grpc.aio.ClientCallDetails, token: str) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*_token_metadata(token, details.metadata))
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


# Two classes: grpc.aio files an interceptor under the first kind it is an instance of.
class _AsyncUnaryToken(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_async_details(details, self._token), request)


class _AsyncStreamToken(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_async_details(details, self._token), request)


@dataclass(frozen=True)
class _SyncDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: Any
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: Any


class _SyncToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self._token = token

    def _details(self, details: Any) -> _SyncDetails:
        return _SyncDetails(
            details.method,
            details.timeout,
            _token_metadata(self._token, details.metadata),
            details.credentials,
            details.wait_for_ready,
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)
