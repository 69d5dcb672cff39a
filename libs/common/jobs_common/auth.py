"""API_TOKENS: the clients allowed to call the api. Each is a name, the tenant it belongs to, its
role, and its token's SHA-256 digest.

An entry is ``name[@tenant][/role]:token`` or ``name[@tenant][/role]:sha256:<64 hex digits>``,
comma separated. The tenant defaults to ``default`` and the role to ``admin``, so the entries
written before tenants existed (``name:token``) keep every power they had, inside the tenant
that holds every job made before.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass

__all__ = ["DEFAULT_TENANT", "ApiToken", "Caller", "Role", "parse_api_tokens"]

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"
_TENANT = r"[a-z0-9][a-z0-9-]{0,62}"
_PRINCIPAL = re.compile(rf"(?P<name>{_NAME})(?:@(?P<tenant>[^/]*))?(?:/(?P<role>.*))?", re.DOTALL)
_TENANT_NAME = re.compile(_TENANT)
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
MIN_TOKEN_LENGTH = 16
DEFAULT_TENANT = "default"


class Role(enum.IntEnum):
    """What a token may do; each role may do what the roles below it may.

    * ``reader``: read jobs, executions, dead letters, queues and workers, and watch jobs;
    * ``writer``: also create, change, run, pause, delete and cancel jobs, and replay one execution;
    * ``admin``: also change queues (pause, resume, settings) and replay or purge dead letters by filter.
    """

    READER = 1
    WRITER = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Caller:
    """Who makes a call: a client's name, its tenant and its role."""

    name: str
    tenant: str
    role: Role


@dataclass(frozen=True, slots=True)
class ApiToken:
    name: str
    digest: bytes  # SHA-256 of the token
    tenant: str = DEFAULT_TENANT
    role: Role = Role.ADMIN

    @property
    def caller(self) -> Caller:
        return Caller(self.name, self.tenant, self.role)


def parse_api_tokens(value: str) -> list[ApiToken]:
    """Parses API_TOKENS; ValueError names the entry that is wrong (by position and name, never
    by its secret)."""
    tokens: list[ApiToken] = []
    for position, raw in enumerate(part.strip() for part in value.split(",")):
        if not raw:
            continue
        principal, sep, secret = raw.partition(":")
        where = f"API_TOKENS entry {position + 1}"
        found = _PRINCIPAL.fullmatch(principal)
        if not sep or found is None:
            raise ValueError(
                f"{where}: expected 'name[@tenant][/role]:token' or 'name[@tenant][/role]:sha256:<hex>' with a name"
                " of letters, digits, '.', '_' or '-'"
            )
        name = found["name"]
        where = f"{where} ({name})"
        tenant = found["tenant"] if found["tenant"] is not None else DEFAULT_TENANT
        if not _TENANT_NAME.fullmatch(tenant):
            raise ValueError(f"{where}: a tenant is 1-63 lowercase letters, digits or '-', letter or digit first")
        role_name = found["role"] if found["role"] is not None else Role.ADMIN.label
        if role_name not in {role.label for role in Role}:
            raise ValueError(f"{where}: the role must be one of {', '.join(role.label for role in Role)}")
        if secret.startswith("sha256:"):
            hexdigest = secret.removeprefix("sha256:")
            if not _HEX_DIGEST.fullmatch(hexdigest):
                raise ValueError(f"{where}: a sha256 digest is 64 hexadecimal digits")
            digest = bytes.fromhex(hexdigest)
        else:
            if len(secret) < MIN_TOKEN_LENGTH:
                raise ValueError(f"{where}: a token has at least {MIN_TOKEN_LENGTH} characters")
            digest = hashlib.sha256(secret.encode()).digest()
        if any(t.name == name for t in tokens):
            raise ValueError(f"API_TOKENS entry {position + 1}: the name {name!r} is used twice")
        if any(t.digest == digest for t in tokens):
            raise ValueError(f"{where}: the same token is given to another entry; each client needs its own")
        tokens.append(ApiToken(name, digest, tenant, Role[role_name.upper()]))
    return tokens
