"""API_TOKENS: the clients allowed to call the api, each a name and its token's SHA-256 digest."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

__all__ = ["ApiToken", "parse_api_tokens"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True, slots=True)
class ApiToken:
    name: str
    digest: bytes  # SHA-256 of the token


def parse_api_tokens(value: str) -> list[ApiToken]:
    """``name:token`` or ``name:sha256:<64 hex digits>``, comma separated; ValueError names the
    entry that is wrong (by position and name, never by its secret)."""
    tokens: list[ApiToken] = []
    for position, raw in enumerate(part.strip() for part in value.split(",")):
        if not raw:
            continue
        name, sep, secret = raw.partition(":")
        where = f"API_TOKENS entry {position + 1}"
        if not sep or not _NAME.fullmatch(name):
            raise ValueError(
                f"{where}: expected 'name:token' or 'name:sha256:<hex>' with a name of letters, digits, '.', '_' or '-'"
            )
        if secret.startswith("sha256:"):
            hexdigest = secret.removeprefix("sha256:")
            if not _HEX_DIGEST.fullmatch(hexdigest):
                raise ValueError(f"{where} ({name}): a sha256 digest is 64 hexadecimal digits")
            digest = bytes.fromhex(hexdigest)
        else:
            if len(secret) < MIN_TOKEN_LENGTH:
                raise ValueError(f"{where} ({name}): a token has at least {MIN_TOKEN_LENGTH} characters")
            digest = hashlib.sha256(secret.encode()).digest()
        if any(t.name == name for t in tokens):
            raise ValueError(f"{where}: the name {name!r} is used twice")
        tokens.append(ApiToken(name, digest))
    return tokens
