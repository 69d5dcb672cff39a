"""Configuration of every process, read once from the environment (see docs/configuration.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobs_common._durations import parse_duration
from jobs_common.auth import ApiToken, parse_api_tokens
from jobs_common.domain import Retention
from jobs_common.egress import EgressPolicy, parse_networks
from jobs_common.secrets import SecretBox, parse_secret_keys

__all__ = ["Settings"]

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class Settings(BaseSettings):
    """Every setting of the api and the worker; names follow the original plan's variables."""

    # hide_input_in_errors: a bad value is named, never echoed (tokens, passwords in URLs).
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore", hide_input_in_errors=True)

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/jobscheduler"
    database_auto_create: bool = True
    database_pool_size: int = Field(default=20, ge=1)

    redis_url: str | None = None
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_username: str | None = None
    redis_password: str | None = None
    redis_db: int = Field(default=0, ge=0)
    # Redis Sentinel: the Sentinels' host:port list. When set, the primary is asked of them by
    # REDIS_SENTINEL_MASTER's name (and asked again after a failover) instead of REDIS_HOST/PORT;
    # REDIS_USERNAME/PASSWORD/DB still apply to the primary, REDIS_SENTINEL_PASSWORD to the Sentinels.
    redis_sentinels: str = ""
    redis_sentinel_master: str = "mymaster"
    redis_sentinel_password: str | None = None

    # "production" (the default): the api refuses to start without API_TOKENS or SECRETS_KEYS,
    # unless ALLOW_INSECURE is set. "development" (`make run`, the tests): it warns instead.
    environment: Literal["development", "production"] = "production"
    allow_insecure: bool = False
    # Bearer tokens of the api's clients (see jobs_common.auth); empty: no authentication.
    api_tokens: SecretStr = SecretStr("")
    # Keys sealing secret header values and signing secrets at rest (see jobs_common.secrets):
    # "id:base64-key,..." with 32-byte keys, the first sealing; empty: stored in clear.
    secrets_keys: SecretStr = SecretStr("")
    # Services callable without a token besides grpc.health.v1.Health (comma separated).
    auth_open_services: str = (
        "grpc.reflection.v1.ServerReflection,grpc.reflection.v1alpha.ServerReflection,externalscaler.ExternalScaler"
    )

    grpc_host: str = "[::]"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    grpc_shutdown_grace: Duration = timedelta(seconds=5)
    # Let several api processes listen on GRPC_PORT (and GRPC_HEALTH_PORT) together: the kernel
    # spreads new connections over them (SO_REUSEPORT; each connection stays with one process).
    # Off, a port another process holds is an error at start, not a silent share.
    grpc_reuse_port: bool = False
    # TLS on the gRPC port (PEM files); with a client CA, mutual TLS: clients must present a
    # certificate it signed.
    grpc_tls_cert_file: str = ""
    grpc_tls_key_file: str = ""
    grpc_tls_client_ca_file: str = ""
    # A second, plaintext listener serving grpc.health.v1 only (0: none), for probes that cannot
    # speak TLS (Kubernetes' gRPC probe, the container HEALTHCHECK) while the api port does.
    grpc_health_port: int = Field(default=0, ge=0, le=65535)
    # Largest request message; a larger one answers RESOURCE_EXHAUSTED.
    grpc_max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    health_check_interval: Duration = timedelta(seconds=2)

    # `make run`: api processes sharing GRPC_PORT, and worker processes.
    api_processes: int = Field(default=1, ge=1)
    worker_pool_size: int = Field(default=1, ge=1)
    worker_max_concurrent_jobs: int = Field(default=500, ge=1)
    worker_http_timeout: Duration = timedelta(seconds=90)
    # A worker that cannot record an outcome (PostgreSQL down) keeps it and retries this long
    # before it gives the execution back to be called again.
    worker_record_deadline: Duration = timedelta(minutes=10)
    worker_queue: str = "default"
    worker_drain_timeout: Duration = timedelta(seconds=95)
    worker_health_file: str = "/tmp/jobs-worker.health"
    worker_health_max_age: Duration = timedelta(seconds=30)
    # At start, how long a worker waits for Redis and PostgreSQL (at the schema it needs) to
    # answer before it exits non-zero, saying which did not.
    worker_startup_timeout: Duration = timedelta(seconds=60)
    # This many claims or records in a row failing on PostgreSQL make the health check fail.
    worker_unhealthy_after_errors: int = Field(default=3, ge=1)

    queue_batch_size: int = Field(default=100, ge=1)
    queue_poll_interval: Duration = timedelta(milliseconds=10)
    queue_max_retries: int = Field(default=3, ge=0)
    queue_keep_result: Duration = timedelta(hours=1)

    # Background loops of the api (each replica runs them; they are safe to run side by side).
    scheduler_enabled: bool = True
    scheduler_interval: Duration = timedelta(seconds=1)
    scheduler_batch_size: int = Field(default=500, ge=1)
    schedule_max_catch_up: int = Field(default=100, ge=1)
    reconciler_enabled: bool = True
    reconcile_interval: Duration = timedelta(seconds=10)
    reconcile_grace: Duration = timedelta(seconds=10)
    reconcile_batch_size: int = Field(default=1000, ge=1)
    # History retention (per queue with UpdateQueue; these are the defaults; 0 keeps for ever):
    # finished executions and dead letters older than this after they ended are deleted, with
    # their attempts and the jobs left without any, by a loop that runs on one replica at a time.
    history_retention: Duration = timedelta(days=30)
    dead_letter_retention: Duration = timedelta(days=30)
    history_purge_enabled: bool = True
    history_purge_interval: Duration = timedelta(minutes=1)
    history_purge_batch_size: int = Field(default=500, ge=1, le=10_000)
    # QueueService.GetScalingRecommendation (see the formula in docs/operations.md).
    scaling_target_utilization: float = Field(default=0.7, gt=0, le=1)
    scaling_min_workers: int = Field(default=1, ge=0)
    scaling_max_workers: int = Field(default=20, ge=1)
    scaling_scale_down_cooldown: Duration = timedelta(minutes=5)
    scaling_due_within: Duration = timedelta(seconds=30)
    scaling_max_ready_age: Duration = timedelta(seconds=10)
    # WatchJob re-reads the job this often besides following notifications (which can be lost).
    watch_resync_interval: Duration = timedelta(seconds=5)
    # Long-lived streams (WatchJob, KEDA's StreamIsActive) open at once, per api process, per
    # tenant in it and per client connection; one more is RESOURCE_EXHAUSTED.
    streams_max: int = Field(default=1000, ge=1)
    streams_max_per_tenant: int = Field(default=500, ge=1)
    streams_max_per_connection: int = Field(default=100, ge=1)
    # A worker holds each execution it runs under a lease of WORKER_LEASE_TTL, renewed every
    # WORKER_HEARTBEAT_INTERVAL; a dead worker's executions run elsewhere once it lapses.
    # The heartbeat renews the lease first, then makes any full garbage collection (1.5 s at most
    # measured at 10,000 calls), so a lease outlives that pause with two seconds to spare. A 3 s
    # TTL did not shorten recovery in the chaos suite (kill → retry p50 4.26 s, p99 5.52 s).
    worker_lease_ttl: Duration = timedelta(seconds=4)
    worker_heartbeat_interval: Duration = timedelta(seconds=1)
    # The lease is renewed from a thread of its own while the worker's event loop turns; a loop
    # that has not turned for this long (stuck, not merely busy) stops the renewals.
    worker_loop_stall_limit: Duration = timedelta(seconds=30)

    job_max_timeout: Duration = timedelta(seconds=300)
    job_max_attempts: int = Field(default=100, ge=1)
    job_max_body_bytes: int = Field(default=1024 * 1024, ge=0)
    job_max_headers: int = Field(default=64, ge=0)
    job_max_header_bytes: int = Field(default=16 * 1024, ge=0)
    job_max_url_length: int = Field(default=2048, ge=16)
    job_max_labels: int = Field(default=64, ge=0)
    response_body_capture_bytes: int = Field(default=64 * 1024, ge=0)

    # Egress (SSRF) policy: jobs may call public addresses only, plus these CIDRs and host names
    # (comma separated; a host entry "*.example.internal" allows its subdomains). Development
    # allows loopback here explicitly: EGRESS_ALLOW_NETWORKS=127.0.0.0/8,::1/128.
    egress_allow_networks: str = ""
    egress_allow_hosts: str = ""
    # Redirects a job that asks to follow them may take (each hop passes the policy again).
    egress_max_redirects: int = Field(default=5, ge=0, le=20)

    log_level: str = "INFO"
    # json (one object per line), console, or auto: console in a terminal, JSON otherwise.
    log_format: Literal["auto", "json", "console"] = "auto"
    # Keep URL query values in log lines and span attributes (off: masked, as they may hold
    # credentials: pre-signed URLs, ?token=...).
    telemetry_url_queries: bool = False

    # Prometheus: /metrics of the api on METRICS_PORT, of a worker on WORKER_METRICS_PORT (0: off).
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(default=9100, ge=0, le=65535)
    worker_metrics_port: int = Field(default=9101, ge=0, le=65535)
    metrics_refresh_interval: Duration = timedelta(seconds=5)
    # Counting dead letters reads the whole dead-letter set (438 ms, 208,185 buffers with 30,000
    # of them among 1,000,000 executions: make plans, 2026-11-29), so it is refreshed less often.
    metrics_dead_letters_interval: Duration = timedelta(minutes=1)
    # OpenTelemetry spans over OTLP/gRPC; the exporter follows the standard OTEL_* variables.
    tracing_enabled: bool = False

    # Fault injection for `make chaos`, never for production: the probability that the api kills
    # itself (SIGKILL) after committing a CreateJob and before enqueueing it.
    fault_crash_after_commit: float = Field(default=0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check_timeouts(self) -> Settings:
        if self.worker_http_timeout > self.job_max_timeout:
            raise ValueError("WORKER_HTTP_TIMEOUT must not exceed JOB_MAX_TIMEOUT")
        if self.worker_http_timeout <= timedelta(0):
            raise ValueError("WORKER_HTTP_TIMEOUT must be positive")
        if self.scaling_min_workers > self.scaling_max_workers:
            raise ValueError("SCALING_MIN_WORKERS must not exceed SCALING_MAX_WORKERS")
        if not timedelta(0) < self.worker_heartbeat_interval * 2 <= self.worker_lease_ttl:
            raise ValueError("WORKER_HEARTBEAT_INTERVAL must be positive and at most half of WORKER_LEASE_TTL")
        if self.worker_loop_stall_limit < self.worker_heartbeat_interval:
            raise ValueError("WORKER_LOOP_STALL_LIMIT must be at least WORKER_HEARTBEAT_INTERVAL")
        parse_api_tokens(self.api_tokens.get_secret_value())  # a malformed entry fails at start
        if self.redis_sentinels and self.redis_url:
            raise ValueError("REDIS_URL and REDIS_SENTINELS exclude each other: give one")
        _ = self.sentinel_addresses  # a malformed entry fails at start
        parse_networks(self.egress_allow_networks)
        parse_secret_keys(self.secrets_keys.get_secret_value())
        if bool(self.grpc_tls_cert_file) != bool(self.grpc_tls_key_file):
            raise ValueError("GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE go together")
        if self.grpc_tls_client_ca_file and not self.grpc_tls_cert_file:
            raise ValueError("GRPC_TLS_CLIENT_CA_FILE (mutual TLS) needs GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE")
        return self

    @property
    def secret_box(self) -> SecretBox:
        return SecretBox(parse_secret_keys(self.secrets_keys.get_secret_value()))

    @property
    def egress_policy(self) -> EgressPolicy:
        return EgressPolicy.from_settings(self.egress_allow_networks, self.egress_allow_hosts)

    @property
    def api_token_list(self) -> list[ApiToken]:
        return parse_api_tokens(self.api_tokens.get_secret_value())

    @property
    def open_services(self) -> list[str]:
        return [name.strip() for name in self.auth_open_services.split(",") if name.strip()]

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """REDIS_SENTINELS as (host, port) pairs; empty when Sentinel is not used."""
        addresses = []
        for entry in (part.strip() for part in self.redis_sentinels.split(",")):
            if not entry:
                continue
            host, colon, port = entry.rpartition(":")
            if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"REDIS_SENTINELS entry {entry!r} is not host:port")
            addresses.append((host.strip("[]"), int(port)))
        return addresses

    @property
    def redis_dsn(self) -> str:
        """The Redis URL: REDIS_URL when set (``rediss://`` for TLS), else built from
        REDIS_HOST/PORT/USERNAME/PASSWORD/DB (for display: connections take those fields as they
        are, so a password needs no URL escaping)."""
        if self.redis_url:
            return self.redis_url
        auth = f"{self.redis_username or ''}:{self.redis_password}@" if self.redis_password else ""
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/{self.redis_db}"

    @property
    def default_max_attempts(self) -> int:
        """Attempts of a job that sets none: the first one plus QUEUE_MAX_RETRIES retries."""
        return min(self.queue_max_retries + 1, self.job_max_attempts)

    @property
    def retention(self) -> Retention:
        """The retention of a queue that has none of its own."""
        return Retention(self.history_retention, self.dead_letter_retention)

    @property
    def arq_job_timeout(self) -> timedelta:
        """arq's job_timeout: above the longest allowed call, so the HTTP timeout always fires first."""
        return self.job_max_timeout + timedelta(seconds=30)

    @property
    def public_database_url(self) -> str:
        """DATABASE_URL without its password, for messages."""
        return _redact_url(self.database_url)


def _redact_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else f"{scheme}://{user}@{host}"
