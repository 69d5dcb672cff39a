"""Bearer-token authentication and role checks of the gRPC api (``authorization: Bearer <token>``
metadata).

API_TOKENS names the clients (:mod:`jobs_common.auth`): each has a tenant and a role. Presented
tokens are hashed and compared with every configured digest in constant time
(``hmac.compare_digest``), so neither the token nor which entry matched leaks through timing. A
missing or unknown token is UNAUTHENTICATED; a role below the one the method needs
(:mod:`jobs_api.roles`) is PERMISSION_DENIED naming that role. The call then runs as its caller
(:mod:`jobs_api.callers`), which scopes it to its tenant. ``grpc.health.v1.Health`` is always
open (probes carry no credentials), and so are the services in AUTH_OPEN_SERVICES (by default
reflection and KEDA's external scaler, which cannot send metadata). Without API_TOKENS every call
is accepted, as the admin of the default tenant.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Collection
from typing import Any

import grpc
from opentelemetry import trace

from jobs_api.callers import ANONYMOUS, calling_as
from jobs_api.errors import abort_with
from jobs_api.interceptors import Context, Continuation, split_method, wrap_handler
from jobs_api.roles import required_role
from jobs_common.auth import ApiToken, Caller
from jobs_common.errors import PermissionDeniedError, UnauthenticatedError
from jobs_common.logs import bind

__all__ = ["AuthInterceptor"]

logger = logging.getLogger(__name__)

HEALTH_SERVICE = "grpc.health.v1.Health"
_BEARER = "bearer "


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Put it inside the metrics and tracing interceptors, so refused calls are counted and traced."""

    def __init__(self, tokens: Collection[ApiToken], open_services: Collection[str]) -> None:
        self._tokens = list(tokens)
        self._open = {HEALTH_SERVICE, *open_services}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        service, _ = split_method(handler_call_details.method)
        if not self._tokens or service in self._open:
            return wrap_handler(handler, handler_call_details.method, self._anonymous)
        return wrap_handler(handler, handler_call_details.method, self._authenticated)

    @contextlib.asynccontextmanager
    async def _anonymous(self, method: str, context: Context) -> AsyncIterator[None]:
        with calling_as(ANONYMOUS):
            yield

    @contextlib.asynccontextmanager
    async def _authenticated(self, method: str, context: Context) -> AsyncIterator[None]:
        values = [v for k, v in context.invocation_metadata() or () if k == "authorization" and isinstance(v, str)]
        if not values:
            await abort_with(
                context,
                UnauthenticatedError(
                    "missing authorization metadata: send 'authorization: Bearer <token>'", reason="MISSING_CREDENTIALS"
                ),
            )
        presented = values[0]
        if presented[: len(_BEARER)].lower() != _BEARER:
            await abort_with(
                context,
                UnauthenticatedError("authorization metadata must be 'Bearer <token>'", reason="INVALID_CREDENTIALS"),
            )
        caller = self.match(presented[len(_BEARER) :].strip())
        if caller is None:
            logger.warning("%s: unknown bearer token refused", method)
            await abort_with(
                context, UnauthenticatedError("the bearer token is not valid", reason="INVALID_CREDENTIALS")
            )
        bind(client=caller.name, tenant=caller.tenant)
        span = trace.get_current_span()
        span.set_attribute("enduser.id", caller.name)
        span.set_attribute("enduser.role", caller.role.label)
        span.set_attribute("jobscheduler.tenant", caller.tenant)
        needed = required_role(*split_method(method))
        if caller.role < needed:
            logger.warning("%s: refused to %s (role %s)", method, caller.name, caller.role.label)
            await abort_with(
                context,
                PermissionDeniedError(
                    f"{split_method(method)[1]} needs the {needed.label} role; the token of {caller.name!r}"
                    f" has the {caller.role.label} role",
                    reason="ROLE_REQUIRED",
                ),
            )
        with calling_as(caller):
            yield

    def match(self, token: str) -> Caller | None:
        """The caller whose token this is; every entry is compared, matched or not."""
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for entry in self._tokens:
            if hmac.compare_digest(digest, entry.digest):
                found = entry.caller
        return found
