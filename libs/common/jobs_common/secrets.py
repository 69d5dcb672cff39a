"""Secrets at rest: a job's secret header values and signing secrets, sealed with AES-256-GCM.

``SECRETS_KEYS`` is ``id:base64-key[,id:base64-key...]`` (32-byte keys). The first key seals; every
listed key opens, so a key is rotated by putting a new one first, re-sealing what the old one
sealed (``python -m jobs_common.reseal``), then dropping the old one.

A sealed value names its key and is bound to where it is kept: ``v2:<id>:<base64
nonce+ciphertext>``, with the key id and the place (``bound_to``: the job and the column, see
:func:`job_secrets_binding`) as AES-GCM associated data, so a value copied into another job's
row does not open there. ``v1:`` values (bound to their key id only, written before) still open;
the reseal turns them into ``v2:``. Without keys values are stored in clear (``plain:``) and the
processes warn at start.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import uuid
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "SealedSecrets",
    "SecretBox",
    "SecretsError",
    "job_secrets_binding",
    "parse_secret_keys",
]

_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_NONCE_BYTES = 12


def job_secrets_binding(job_id: uuid.UUID | str) -> str:
    """Where a job's sealed secrets live: its row's ``sealed_secrets``, and the copy each of its
    executions takes (so executions open with their job's id too)."""
    return f"jobs/{job_id}/sealed_secrets"


def _associated_data(key_id: str, bound_to: str) -> bytes:
    return f"v2\x00{key_id}\x00{bound_to}".encode()


class SecretsError(ValueError):
    """A sealed value cannot be opened (unknown key id, wrong key, damaged), or a bad key setting."""


@dataclass(frozen=True, slots=True)
class SealedSecrets:
    """What a call keeps secret: header values (by header name) and signing secrets."""

    headers: dict[str, str] = field(default_factory=dict)
    signing_secrets: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.headers or self.signing_secrets)


@dataclass(frozen=True, slots=True)
class SecretBox:
    """Seals with the first of ``keys``, opens with any of them."""

    keys: tuple[tuple[str, bytes], ...] = ()

    @property
    def current_key_id(self) -> str | None:
        return self.keys[0][0] if self.keys else None

    def seal(self, secrets: SealedSecrets, bound_to: str) -> str | None:
        """The sealed value, which opens only with the same ``bound_to``."""
        if not secrets:
            return None
        plaintext = json.dumps({"headers": secrets.headers, "signing_secrets": list(secrets.signing_secrets)}).encode()
        if not self.keys:
            return "plain:" + base64.b64encode(plaintext).decode()
        key_id, key = self.keys[0]
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, plaintext, _associated_data(key_id, bound_to))
        return f"v2:{key_id}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str | None, bound_to: str) -> SealedSecrets:
        """Raises SecretsError for a value sealed elsewhere (another ``bound_to``), with a key
        SECRETS_KEYS does not list, or damaged."""
        if sealed is None:
            return SealedSecrets()
        scheme, _, rest = sealed.partition(":")
        try:
            if scheme == "plain":
                plaintext = base64.b64decode(rest, validate=True)
            elif scheme in ("v1", "v2"):
                key_id, _, payload = rest.partition(":")
                key = dict(self.keys).get(key_id)
                if key is None:
                    raise SecretsError(f"sealed with key {key_id[:32]!r}, which SECRETS_KEYS does not list")
                raw = base64.b64decode(payload, validate=True)
                associated = key_id.encode() if scheme == "v1" else _associated_data(key_id, bound_to)
                plaintext = AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], associated)
            else:
                raise SecretsError(f"unknown sealing scheme {scheme[:16]!r}")
            data = json.loads(plaintext)
            return SealedSecrets(
                {str(name): str(value) for name, value in dict(data["headers"]).items()},
                tuple(str(secret) for secret in data["signing_secrets"]),
            )
        except SecretsError:
            raise
        except InvalidTag:
            raise SecretsError(
                f"key {key_id!r} does not open this value (wrong key, damaged, or sealed for another job)"
            ) from None
        except (ValueError, TypeError, KeyError, AttributeError):  # base64, JSON or shape: nothing is echoed
            raise SecretsError("the sealed value is damaged") from None

    def needs_resealing(self, sealed: str | None) -> bool:
        """True for a value not sealed with the current key in the current scheme (or in clear
        while a key exists)."""
        return sealed is not None and self.keys != () and not sealed.startswith(f"v2:{self.current_key_id}:")


def parse_secret_keys(text: str) -> tuple[tuple[str, bytes], ...]:
    """``"2026-11:base64,2026-05:base64"`` → keys, the first sealing. Errors name the entry's id
    (or position), never the key."""
    keys: list[tuple[str, bytes]] = []
    for position, entry in enumerate((part.strip() for part in text.split(",")), start=1):
        if not entry:
            continue
        key_id, sep, encoded = entry.partition(":")
        if not sep or not _KEY_ID.fullmatch(key_id):
            raise SecretsError(f"SECRETS_KEYS entry {position} must be id:base64-key (id: letters, digits, - or _)")
        try:
            key = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise SecretsError(f"SECRETS_KEYS key {key_id!r} is not base64") from None
        if len(key) != 32:
            raise SecretsError(f"SECRETS_KEYS key {key_id!r} must be 32 bytes (openssl rand -base64 32)")
        if key_id in dict(keys):
            raise SecretsError(f"SECRETS_KEYS names key {key_id!r} twice")
        keys.append((key_id, key))
    return tuple(keys)
