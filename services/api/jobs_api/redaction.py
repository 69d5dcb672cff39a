"""Secrets in the api's answers read "[REDACTED]"; in UpdateJob, "[REDACTED]" keeps what is stored,
so a job read with GetJob can be sent back without its secrets. Secrets are write-only: a stored
secret that an update keeps (it did not send the value again) stays secret, and never goes to an
origin it was not given for."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit

from jobs_common.domain import HttpRequestSpec, JobSpec
from jobs_common.errors import FieldViolation, InvalidArgumentError
from jobs_common.secrets import REDACTED
from jobscheduler.v1 import resources_pb2 as pb

__all__ = ["generated_secrets", "keep_stored_secrets", "restore_redacted"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def restore_redacted(merged: pb.HttpRequest, stored: HttpRequestSpec) -> None:
    """Puts the stored secret back wherever ``merged`` says "[REDACTED]": a secret header's
    value (by name, any case) and a signing secret (by position). What cannot be restored stays
    "[REDACTED]", which validation refuses."""
    secret_values = {
        name.lower(): value for name, value in stored.headers.items() if name.lower() in stored.secret_headers
    }
    for name, value in list(merged.headers.items()):
        if value == REDACTED and name.lower() in secret_values:
            merged.headers[name] = secret_values[name.lower()]
    for index, secret in enumerate(merged.signing.secrets):
        if secret == REDACTED and index < len(stored.signing_secrets):
            merged.signing.secrets[index] = stored.signing_secrets[index]


def generated_secrets(stored: HttpRequestSpec, sent: pb.HttpRequest) -> set[str]:
    """The signing secrets the client did not send: the server generated them, and the answer
    shows them (once per call; a CreateJob repeated with its request_id shows them again)."""
    return set(stored.signing_secrets) - set(sent.signing.secrets)


def keep_stored_secrets(spec: JobSpec, stored: JobSpec, sent: pb.HttpRequest) -> JobSpec:
    """``spec`` (an update of ``stored``, from the request's ``sent`` http_request) with the
    secrets it keeps from storage still secret, whatever its ``secret_headers`` say.

    Raises:
        InvalidArgumentError: the URL moves to another origin while secrets given for the old
            one are kept: they must be sent again (or dropped).
    """
    request, before = spec.http_request, stored.http_request
    kept_headers = _kept_secret_headers(request, before, sent)
    supplied = {secret for secret in sent.signing.secrets if secret != REDACTED}
    kept_signing = [s for s in request.signing_secrets if s in before.signing_secrets and s not in supplied]
    old, new = _origin(before.url), _origin(request.url)
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


def _kept_secret_headers(request: HttpRequestSpec, before: HttpRequestSpec, sent: pb.HttpRequest) -> dict[str, str]:
    """The headers of ``request`` whose value is a stored secret the update did not send again,
    by lowercase name (the name as written)."""
    stored = {name.lower(): value for name, value in before.headers.items() if name.lower() in before.secret_headers}
    resent = {name.lower() for name, value in sent.headers.items() if value != REDACTED}
    return {
        name.lower(): name
        for name, value in request.headers.items()
        if name.lower() in stored and value == stored[name.lower()] and name.lower() not in resent
    }


def _origin(url: str) -> str:
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"
