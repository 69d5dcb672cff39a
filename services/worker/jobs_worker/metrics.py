"""The worker's Prometheus metrics (see the table in docs/operations.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ATTEMPTS",
    "ATTEMPT_SECONDS",
    "DISPATCH_LAG_SECONDS",
    "EXECUTIONS_FINISHED",
    "FULL_COLLECTION_SECONDS",
    "IN_FLIGHT",
    "LEASES_LOST",
    "STORE_ERRORS",
]

# Up to the longest allowed timeouts (90 s default, 300 s cap).
_CALL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 90, 120, 300)
_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

ATTEMPTS = Counter(
    "jobscheduler_attempts_total",
    "HTTP attempts made, by outcome (success, failure, or cancelled: the call was cut short) and error kind"
    " (empty on success; CANCELLED or INTERRUPTED when cancelled).",
    ["outcome", "error_kind"],
)
ATTEMPT_SECONDS = Histogram(
    "jobscheduler_attempt_duration_seconds", "Duration of an HTTP attempt, answer or error.", buckets=_CALL_BUCKETS
)
EXECUTIONS_FINISHED = Counter(
    "jobscheduler_executions_finished_total",
    "Attempts recorded, by the state they moved the execution to (SUCCEEDED, RETRY_SCHEDULED, DEAD).",
    ["state"],
)
DISPATCH_LAG_SECONDS = Histogram(
    "jobscheduler_dispatch_lag_seconds",
    "From when an attempt was due (its schedule or retry time) to its claim by a worker.",
    buckets=_LAG_BUCKETS,
)
FULL_COLLECTION_SECONDS = Histogram(
    "jobscheduler_worker_full_gc_seconds",
    "Full garbage collections the worker made (paced, from the heartbeat), by how long the event loop stopped.",
    buckets=_LAG_BUCKETS,
)
IN_FLIGHT = Gauge("jobscheduler_in_flight_calls", "HTTP calls this worker is making right now.")
LEASES_LOST = Counter(
    "jobscheduler_leases_lost_total", "Executions whose lease this worker lost while it held them (missed heartbeats)."
)
STORE_ERRORS = Counter(
    "jobscheduler_worker_store_errors_total",
    "PostgreSQL operations of the worker that failed, by operation: claim, record (an attempt's"
    " outcome; each try), release, renew (the lease heartbeat).",
    ["operation"],
)
for _operation in ("claim", "record", "release", "renew"):
    STORE_ERRORS.labels(_operation)  # exported as 0 from the start: a rate() needs the series
