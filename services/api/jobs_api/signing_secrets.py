"""Signing secrets the server makes: one is generated when a job asks for it (before the job is
checked, so the checks stay pure), and the answer shows it, while every other secret reads
"[REDACTED]"."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

from jobs_common.domain import HttpRequestSpec, JobDraft
from jobs_common.signing import generate_signing_secret

__all__ = ["generated_secrets", "with_requested_secret"]


def with_requested_secret(draft: JobDraft) -> JobDraft:
    """``draft`` with a new signing secret put first when it asks for one (``generate_secret``)."""
    if not draft.generate_signing_secret:
        return draft
    return dataclasses.replace(
        draft, signing_secrets=[generate_signing_secret(), *draft.signing_secrets], generate_signing_secret=False
    )


def generated_secrets(stored: HttpRequestSpec, sent: Collection[str]) -> set[str]:
    """The signing secrets the client did not send: the server generated them, and the answer
    shows them (once per call; a CreateJob repeated with its request_id shows them again)."""
    return set(stored.signing_secrets) - set(sent)
