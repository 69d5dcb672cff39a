"""Who is calling, for the servicers: the authentication interceptor sets it for each call, and
the servicers scope what they read and write to its tenant."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from jobs_common.auth import DEFAULT_TENANT, Caller, Role

__all__ = ["ANONYMOUS", "calling_as", "current_caller", "current_tenant"]

# Every call when API_TOKENS is empty (development), and the calls to open services.
ANONYMOUS = Caller("anonymous", DEFAULT_TENANT, Role.ADMIN)

_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("caller")


@contextlib.contextmanager
def calling_as(caller: Caller) -> Iterator[None]:
    """Runs the block (one call) as ``caller``."""
    token = _caller.set(caller)
    try:
        yield
    finally:
        _caller.reset(token)


def current_caller() -> Caller:
    """The caller of the call being served; a servicer reached without the interceptor is a bug."""
    try:
        return _caller.get()
    except LookupError:
        raise RuntimeError("no caller: the call did not pass the authentication interceptor") from None


def current_tenant() -> str:
    return current_caller().tenant
