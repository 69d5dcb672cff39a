"""UpdateJob as data: a :class:`JobPatch` names the fields to replace and carries the values sent;
:func:`apply_patch` merges it into the stored definition.

The merge rules live here, free of protobuf and of the database:

* a path names a field of the job as the API spells it (``http_request.url``, ``schedule``); a
  message path replaces every field under it, and a field the patch leaves unset is reset;
* ``[REDACTED]`` sent for a stored secret (a header value by name, a signing secret by position)
  keeps the stored value, so a job read with GetJob can be sent back whole;
* a job keeps its kind (one-off or recurring), and a one-off job its ``run_at``: its execution
  already exists;
* secrets stay write-only (:func:`keep_stored_secrets`): a stored secret the update keeps stays
  secret, and goes to no origin it was not given for.

The merged draft is then checked like a new job's (request validation, in the api).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from urllib.parse import urlsplit

from jobs_common.domain._drafts import JobDraft, ScheduleDraft
from jobs_common.domain._jobs import REDACTED, HttpRequestSpec, JobSpec
from jobs_common.domain._schedules import CatchUpPolicy
from jobs_common.errors import FieldViolation, InvalidArgumentError

__all__ = ["UPDATABLE_FIELDS", "JobPatch", "apply_patch", "draft_of", "keep_stored_secrets", "origin", "patch_leaves"]

# Top-level Job fields a client may change; the rest are output only (or the id).
UPDATABLE_FIELDS = ("http_request", "timeout", "retry_policy", "schedule", "queue", "labels", "priority")

_DEFAULT_PORTS = {"http": 80, "https": 443}

# How each leaf field is copied from the sent draft into the merged one.
_Copy = Callable[[JobDraft, JobDraft], None]


def _field(name: str) -> _Copy:
    def copy(sent: JobDraft, merged: JobDraft) -> None:
        setattr(merged, name, getattr(sent, name))

    return copy


def _schedule_field(name: str) -> _Copy:
    def copy(sent: JobDraft, merged: JobDraft) -> None:
        setattr(merged.schedule, name, getattr(sent.schedule, name))

    return copy


def _cron_time_zone(sent: JobDraft, merged: JobDraft) -> None:
    merged.schedule.time_zone = sent.schedule.time_zone
    if sent.schedule.cron_expression is not None and merged.schedule.cron_expression is None:
        merged.schedule.cron_expression = ""  # the cron now exists, with the expression it was sent with


_LEAVES: dict[str, _Copy] = {
    "http_request.method": _field("method"),
    "http_request.url": _field("url"),
    "http_request.headers": _field("headers"),
    "http_request.body": _field("body"),
    "http_request.follow_redirects": _field("follow_redirects"),
    "http_request.secret_headers": _field("secret_headers"),
    "http_request.signing.secrets": _field("signing_secrets"),
    "http_request.signing.generate_secret": _field("generate_signing_secret"),
    "timeout": _field("timeout"),
    "retry_policy.max_attempts": _field("max_attempts"),
    "retry_policy.min_backoff": _field("min_backoff"),
    "retry_policy.max_backoff": _field("max_backoff"),
    "retry_policy.multiplier": _field("multiplier"),
    "retry_policy.retry_status_codes": _field("retry_status_codes"),
    "schedule.run_at": _field("run_at"),
    "schedule.cron.expression": _schedule_field("cron_expression"),
    "schedule.cron.time_zone": _cron_time_zone,
    "schedule.interval": _schedule_field("interval"),
    "schedule.overlap_policy": _schedule_field("overlap"),
    "schedule.catch_up_policy": _schedule_field("catch_up"),
    "schedule.catch_up_limit": _schedule_field("catch_up_limit"),
    "schedule.start_time": _schedule_field("start_time"),
    "schedule.end_time": _schedule_field("end_time"),
    "schedule.max_runs": _schedule_field("max_runs"),
    "queue": _field("queue"),
    "labels": _field("labels"),
    "priority": _field("priority"),
}


@dataclass(frozen=True, slots=True)
class JobPatch:
    """The fields to replace (``paths``, each a leaf or a message of the job) and the job the
    update sent (``sent``: its fields outside ``paths`` are ignored, except the secrets it sends
    again)."""

    paths: tuple[str, ...]
    sent: JobDraft


def patch_leaves(path: str) -> list[str]:
    """The leaf fields a path replaces: itself, or every leaf under a message; [] for a path
    that names no field of the job."""
    return [leaf for leaf in _LEAVES if leaf == path or leaf.startswith(path + ".")]


def apply_patch(stored: JobSpec, patch: JobPatch) -> JobDraft:
    """The stored definition with the patch's fields replaced, ready to be checked as a job.

    Raises:
        InvalidArgumentError: a path names no field, or the update changes the job's kind or a
            one-off job's ``run_at``.
    """
    merged = draft_of(stored)
    unknown = [path for path in patch.paths if not patch_leaves(path)]
    if unknown:
        raise InvalidArgumentError(
            [FieldViolation("update_mask", f"{path!r} names no field of Job") for path in unknown]
        )
    for path in patch.paths:
        for leaf in patch_leaves(path):
            _LEAVES[leaf](patch.sent, merged)
    _restore_redacted(merged, stored.http_request)
    recurring = merged.schedule.recurring
    if recurring != (stored.schedule is not None):
        raise InvalidArgumentError(
            [FieldViolation("job.schedule", "a one-off job cannot become recurring or the reverse")]
        )
    run_at = merged.run_at.replace(tzinfo=UTC) if merged.run_at and merged.run_at.tzinfo is None else merged.run_at
    if not recurring and run_at != stored.run_at:
        raise InvalidArgumentError(
            [FieldViolation("job.schedule.run_at", "cannot change: the job's execution already exists")]
        )
    return merged


def draft_of(spec: JobSpec) -> JobDraft:
    """A stored definition as a draft: checked again, it gives the same definition back."""
    request, policy, schedule = spec.http_request, spec.retry_policy, spec.schedule
    recurring = ScheduleDraft()
    if schedule is not None:
        recurring = ScheduleDraft(
            cron_expression=schedule.cron.expression if schedule.cron is not None else None,
            time_zone=schedule.cron.time_zone if schedule.cron is not None else "",
            interval=schedule.interval,
            overlap=schedule.overlap.value,
            catch_up=schedule.catch_up.value,
            catch_up_limit=schedule.catch_up_limit if schedule.catch_up is CatchUpPolicy.RUN_ALL else 0,
            start_time=schedule.start_time,
            end_time=schedule.end_time,
            max_runs=schedule.max_runs or 0,
        )
    return JobDraft(
        url=request.url,
        method=request.method.value,
        headers=dict(request.headers),
        body=request.body,
        follow_redirects=request.follow_redirects,
        secret_headers=sorted(name for name in request.headers if name.lower() in request.secret_headers),
        signing_secrets=list(request.signing_secrets),
        timeout=spec.timeout,
        max_attempts=policy.max_attempts,
        min_backoff=policy.min_backoff,
        max_backoff=policy.max_backoff,
        multiplier=policy.multiplier,
        retry_status_codes=list(policy.retry_status_codes),
        run_at=spec.run_at,
        queue=spec.queue,
        labels=dict(spec.labels),
        schedule=recurring,
        priority=spec.priority,
        flow_control=spec.flow_control,
    )


def _restore_redacted(merged: JobDraft, stored: HttpRequestSpec) -> None:
    """Puts the stored secret back wherever ``merged`` says "[REDACTED]": a secret header's
    value (by name, any case) and a signing secret (by position). What cannot be restored stays
    "[REDACTED]", which validation refuses."""
    secret_values = _secret_values(stored)
    merged.headers = {
        name: secret_values.get(name.lower(), value) if value == REDACTED else value
        for name, value in merged.headers.items()
    }
    merged.signing_secrets = [
        stored.signing_secrets[index] if secret == REDACTED and index < len(stored.signing_secrets) else secret
        for index, secret in enumerate(merged.signing_secrets)
    ]


def keep_stored_secrets(spec: JobSpec, stored: JobSpec, sent: JobDraft) -> JobSpec:
    """``spec`` (an update of ``stored``, from the update's ``sent`` job) with the secrets it
    keeps from storage still secret, whatever its ``secret_headers`` say.

    Raises:
        InvalidArgumentError: the URL moves to another origin while secrets given for the old
            one are kept: they must be sent again (or dropped).
    """
    request, before = spec.http_request, stored.http_request
    kept_headers = _kept_secret_headers(request, before, sent)
    supplied = {secret for secret in sent.signing_secrets if secret != REDACTED}
    kept_signing = [s for s in request.signing_secrets if s in before.signing_secrets and s not in supplied]
    old, new = origin(before.url), origin(request.url)
    if old != new and (kept_headers or kept_signing):
        violations = []
        if kept_headers:
            names = ", ".join(sorted(kept_headers.values()))
            were, their, them = (
                ("was", "its value", "it") if len(kept_headers) == 1 else ("were", "their values", "them")
            )
            violations.append(
                FieldViolation(
                    "job.http_request.headers",
                    f"{names} {were} given for {old} and the URL now goes to {new}: send {their} again"
                    f" (or remove {them}) to change the origin",
                )
            )
        if kept_signing:
            violations.append(
                FieldViolation(
                    "job.http_request.signing.secrets",
                    f"the signing secrets were given for {old} and the URL now goes to {new}: send them again,"
                    " or name http_request.signing in update_mask with generate_secret",
                )
            )
        raise InvalidArgumentError(violations)
    still_secret = {name.lower() for name in kept_headers} - request.secret_headers
    if not still_secret:
        return spec
    return dataclasses.replace(
        spec, http_request=dataclasses.replace(request, secret_headers=request.secret_headers | still_secret)
    )


def _secret_values(request: HttpRequestSpec) -> dict[str, str]:
    """The request's secret header values by lowercase name."""
    return {name.lower(): value for name, value in request.headers.items() if name.lower() in request.secret_headers}


def _kept_secret_headers(request: HttpRequestSpec, before: HttpRequestSpec, sent: JobDraft) -> dict[str, str]:
    """The headers of ``request`` whose value is a stored secret the update did not send again,
    by lowercase name (the name as written)."""
    stored = _secret_values(before)
    resent = {name.lower() for name, value in sent.headers.items() if value != REDACTED}
    return {
        name.lower(): name
        for name, value in request.headers.items()
        if name.lower() in stored and value == stored[name.lower()] and name.lower() not in resent
    }


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL, lowercase, with the scheme's default port filled in."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"
