"""The bounds a job must keep, read once from the settings and handed to the checks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from jobs_common.egress import EgressPolicy
from jobs_common.settings import Settings

__all__ = ["JobLimits"]


@dataclass(frozen=True, slots=True)
class JobLimits:
    """What CreateJob and UpdateJob accept (JOB_MAX_*, SCHEDULE_MAX_CATCH_UP, the egress
    policy), and the defaults of what a job leaves unset."""

    egress_policy: EgressPolicy
    max_url_length: int
    max_headers: int
    max_header_bytes: int
    max_body_bytes: int
    max_labels: int
    default_timeout: timedelta
    max_timeout: timedelta
    default_max_attempts: int
    max_attempts: int
    max_catch_up: int

    @classmethod
    def from_settings(cls, settings: Settings) -> JobLimits:
        return cls(
            egress_policy=settings.egress_policy,
            max_url_length=settings.job_max_url_length,
            max_headers=settings.job_max_headers,
            max_header_bytes=settings.job_max_header_bytes,
            max_body_bytes=settings.job_max_body_bytes,
            max_labels=settings.job_max_labels,
            default_timeout=settings.worker_http_timeout,
            max_timeout=settings.job_max_timeout,
            default_max_attempts=settings.default_max_attempts,
            max_attempts=settings.job_max_attempts,
            max_catch_up=settings.schedule_max_catch_up,
        )
