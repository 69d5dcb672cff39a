"""The domain: job-scheduler's vocabulary and its pure rules. No I/O, no protobuf: the api
translates protobuf to these types at its edge, and the store and the worker speak them.

* :mod:`._jobs` — a job's definition (:class:`JobSpec`) and the job as stored (:class:`Job`);
* :mod:`._executions` — executions, attempts and their states;
* :mod:`._schedules` — cron and interval schedules, and what the scheduler does at a tick;
* :mod:`._retry` — backoff delays and Retry-After;
* :mod:`._outcomes` — a claimed execution, an HTTP outcome, and where the execution goes next;
* :mod:`._queues` — queue settings, depths and dead-letter filters;
* :mod:`._scaling` — GetScalingRecommendation's policy;
* :mod:`._drafts` and :mod:`._patch` — a job as sent, and UpdateJob as data.
"""

from jobs_common.domain._drafts import JobDraft, ScheduleDraft
from jobs_common.domain._executions import TERMINAL_EXECUTION_STATES, Attempt, ErrorKind, Execution, ExecutionState
from jobs_common.domain._flow import MAX_FLOW_CONCURRENT, MAX_FLOW_KEY_LENGTH, MAX_FLOW_RATE, FlowControl
from jobs_common.domain._jobs import (
    DEFAULT_SECRET_HEADERS,
    MAX_PRIORITY,
    REDACTED,
    Deduplication,
    HttpMethod,
    HttpRequestSpec,
    Job,
    JobKind,
    JobSpec,
    JobState,
    JobView,
    Page,
    RequestKey,
    RetryPolicy,
    upcoming_run_times,
)
from jobs_common.domain._outcomes import ALWAYS_RETRIED_STATUSES, AttemptResult, Claim, HttpOutcome, NotClaimed, decide
from jobs_common.domain._patch import (
    UPDATABLE_FIELDS,
    JobPatch,
    apply_patch,
    draft_of,
    keep_stored_secrets,
    origin,
    patch_leaves,
)
from jobs_common.domain._queues import (
    DEFAULT_QUEUE,
    KEEP_FOREVER,
    RATE_LIMIT_FIELDS,
    DeadLetterFilter,
    QueueChange,
    QueueDepth,
    QueueInfo,
    RateLimits,
    Retention,
)
from jobs_common.domain._retry import JITTER_FRACTION, LONGEST_RETRY_AFTER, next_delay, parse_retry_after
from jobs_common.domain._scaling import ScalingInputs, ScalingPolicy, oldest_ready_age, per_worker_capacity, recommend
from jobs_common.domain._schedules import (
    CRON_MACROS,
    MIN_INTERVAL,
    CatchUpPolicy,
    CronSpec,
    OverlapPolicy,
    RecurringSchedule,
    TickPlan,
    cron_error,
    fire_times,
    next_fire_time,
    plan_due_ticks,
    time_zone_error,
)

__all__ = [
    "ALWAYS_RETRIED_STATUSES",
    "CRON_MACROS",
    "DEFAULT_QUEUE",
    "DEFAULT_SECRET_HEADERS",
    "JITTER_FRACTION",
    "KEEP_FOREVER",
    "LONGEST_RETRY_AFTER",
    "MAX_FLOW_CONCURRENT",
    "MAX_FLOW_KEY_LENGTH",
    "MAX_FLOW_RATE",
    "MAX_PRIORITY",
    "MIN_INTERVAL",
    "RATE_LIMIT_FIELDS",
    "REDACTED",
    "TERMINAL_EXECUTION_STATES",
    "UPDATABLE_FIELDS",
    "Attempt",
    "AttemptResult",
    "CatchUpPolicy",
    "Claim",
    "CronSpec",
    "DeadLetterFilter",
    "Deduplication",
    "ErrorKind",
    "Execution",
    "ExecutionState",
    "FlowControl",
    "HttpMethod",
    "HttpOutcome",
    "HttpRequestSpec",
    "Job",
    "JobDraft",
    "JobKind",
    "JobPatch",
    "JobSpec",
    "JobState",
    "JobView",
    "NotClaimed",
    "OverlapPolicy",
    "Page",
    "QueueChange",
    "QueueDepth",
    "QueueInfo",
    "RateLimits",
    "RecurringSchedule",
    "RequestKey",
    "Retention",
    "RetryPolicy",
    "ScalingInputs",
    "ScalingPolicy",
    "ScheduleDraft",
    "TickPlan",
    "apply_patch",
    "cron_error",
    "decide",
    "draft_of",
    "fire_times",
    "keep_stored_secrets",
    "next_delay",
    "next_fire_time",
    "oldest_ready_age",
    "origin",
    "parse_retry_after",
    "patch_leaves",
    "per_worker_capacity",
    "plan_due_ticks",
    "recommend",
    "time_zone_error",
    "upcoming_run_times",
]
