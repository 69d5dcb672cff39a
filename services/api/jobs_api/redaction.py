"""Secrets in the api's answers read "[REDACTED]"; in UpdateJob, "[REDACTED]" keeps what is stored,
so a job read with GetJob can be sent back without its secrets."""

from __future__ import annotations

from jobs_common.domain import HttpRequestSpec
from jobs_common.secrets import REDACTED
from jobscheduler.v1 import resources_pb2 as pb

__all__ = ["generated_secrets", "restore_redacted"]


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
