"""Standard Webhooks 1.0 signatures (https://www.standardwebhooks.com): every request of a signing
job carries ``webhook-id`` (the execution id, the same on every retry), ``webhook-timestamp``
(this attempt, Unix seconds) and ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of
"id.timestamp.body">`` per secret, space separated, so a receiver verifies during a rotation
with either secret."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

__all__ = [
    "MAX_SIGNING_SECRETS",
    "SIGNING_HEADERS",
    "generate_signing_secret",
    "signature_headers",
    "signing_secret_problem",
]

PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
GENERATED_SECRET_BYTES = 32
MAX_SIGNING_SECRETS = 5
SIGNING_HEADERS = frozenset({"webhook-id", "webhook-timestamp", "webhook-signature"})


def generate_signing_secret() -> str:
    return PREFIX + base64.b64encode(os.urandom(GENERATED_SECRET_BYTES)).decode()


def signing_secret_problem(secret: str) -> str | None:
    """What is wrong with ``secret``, or None. Never quotes the secret."""
    if not secret.startswith(PREFIX):
        return f"must start with {PREFIX} (Standard Webhooks)"
    try:
        key = base64.b64decode(secret.removeprefix(PREFIX), validate=True)
    except binascii.Error:
        return f"must be {PREFIX} followed by base64"
    if len(key) < MIN_SECRET_BYTES:
        return f"must hold at least {MIN_SECRET_BYTES} random bytes (it holds {len(key)})"
    return None


def signature_headers(secrets: tuple[str, ...], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    signed = f"{message_id}.{timestamp}.".encode() + body
    signatures = [
        "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode() for secret in secrets
    ]
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp), "webhook-signature": " ".join(signatures)}


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))
