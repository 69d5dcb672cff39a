"""A job as a client sent it, before any check: the api's edge builds one from protobuf, request
validation turns it into a :class:`~jobs_common.domain.JobSpec`, and an update merges one into a
stored job (:mod:`jobs_common.domain._patch`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from jobs_common.domain._flow import FlowControl

__all__ = ["JobDraft", "ScheduleDraft"]


@dataclass(slots=True)
class JobDraft:
    """A job as the client sent it, before any check. ``method`` is None when unset and the
    proto enum's name (or ``"<number>"``) otherwise."""

    url: str
    method: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    follow_redirects: bool = False
    secret_headers: list[str] = field(default_factory=list)
    signing_secrets: list[str] = field(default_factory=list)
    generate_signing_secret: bool = False
    timeout: timedelta | None = None
    max_attempts: int | None = None
    min_backoff: timedelta | None = None
    max_backoff: timedelta | None = None
    multiplier: float | None = None
    retry_status_codes: list[int] = field(default_factory=list)
    run_at: datetime | None = None
    queue: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    schedule: ScheduleDraft = field(default_factory=lambda: ScheduleDraft())
    priority: int = 0
    # As the client sent it, unchecked.
    flow_control: FlowControl | None = None


@dataclass(slots=True)
class ScheduleDraft:
    """The recurring part of a schedule as sent; policies are enum names (None when unset)."""

    cron_expression: str | None = None
    time_zone: str = ""
    interval: timedelta | None = None
    overlap: str | None = None
    catch_up: str | None = None
    catch_up_limit: int = 0
    start_time: datetime | None = None
    end_time: datetime | None = None
    max_runs: int = 0

    @property
    def recurring(self) -> bool:
        return self.cron_expression is not None or self.interval is not None

    @property
    def has_recurring_options(self) -> bool:
        return bool(
            self.overlap or self.catch_up or self.catch_up_limit or self.start_time or self.end_time or self.max_runs
        )
