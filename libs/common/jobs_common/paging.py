"""Opaque AIP-158 page tokens (a keyset position plus a fingerprint of the request's filters), and
the byte budget that ends a page early."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from jobs_common.errors import FieldViolation, InvalidArgumentError

__all__ = [
    "ITEM_OVERHEAD_BYTES",
    "PAGE_MAX_BYTES",
    "PagePosition",
    "decode_name_token",
    "decode_page_token",
    "encode_name_token",
    "encode_page_token",
    "filter_fingerprint",
    "items_within_budget",
    "page_within_budget",
]

T = TypeVar("T")

# What one page of a list may hold, estimated from the stored sizes of its items: a page ends
# early (with a next_page_token) before it would pass this, and holds at least one item. Half of
# gRPC's default 4 MiB receive limit, so that a page and the one item that may exceed the budget
# on its own (a job's body is at most JOB_MAX_BODY_BYTES, 1 MiB by default) reach every client.
PAGE_MAX_BYTES = 2 * 1024 * 1024
# Added to each item's variable-length fields for its ids, times, numbers and field tags.
ITEM_OVERHEAD_BYTES = 256


@dataclass(frozen=True, slots=True)
class PagePosition:
    """The last item of the previous page, in (time, id) order: its create_time for most
    listings, its end_time for dead letters."""

    create_time: datetime
    id: uuid.UUID


def filter_fingerprint(**filters: object) -> str:
    canonical = json.dumps(filters, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _to_token(data: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _from_token(token: str) -> Any:
    """The token's JSON. Raises what a malformed one makes base64 or json raise (_MALFORMED)."""
    return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


_MALFORMED = (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError)


def encode_page_token(position: PagePosition, fingerprint: str) -> str:
    return _to_token({"t": position.create_time.isoformat(), "i": str(position.id), "f": fingerprint})


def decode_page_token(token: str, fingerprint: str, field_name: str = "page_token") -> PagePosition | None:
    """Returns None for an empty token.

    Raises:
        InvalidArgumentError: the token is malformed or was made for other filters.
    """
    if not token:
        return None
    try:
        data = _from_token(token)
        position = PagePosition(datetime.fromisoformat(data["t"]), uuid.UUID(data["i"]))
        token_fingerprint = data["f"]
    except _MALFORMED:
        raise InvalidArgumentError([FieldViolation(field_name, "is not a valid page token")]) from None
    if token_fingerprint != fingerprint:
        raise InvalidArgumentError([FieldViolation(field_name, "was made for a request with other filters")])
    return position


def page_within_budget(rows: Sequence[T], page_size: int, size: Callable[[T], int]) -> tuple[Sequence[T], bool]:
    """The page of ``rows`` (read with one more than ``page_size``) that fits in
    PAGE_MAX_BYTES by ``size``, and whether more follow it (a next_page_token is due)."""
    taken = rows[: items_within_budget(size(row) for row in rows[:page_size])]
    return taken, len(rows) > len(taken)


def items_within_budget(sizes: Iterable[int], budget: int = PAGE_MAX_BYTES) -> int:
    """How many of the items, in order, fit in ``budget`` bytes: at least one if there is any."""
    count = total = 0
    for size in sizes:
        total += size + ITEM_OVERHEAD_BYTES
        if count and total > budget:
            break
        count += 1
    return count


def encode_name_token(name: str) -> str:
    """A page token for listings by name (queues): the last name of the page."""
    return _to_token({"n": name})


def decode_name_token(token: str, field_name: str = "page_token") -> str:
    """The name to list after; ``''`` for an empty token.

    Raises:
        InvalidArgumentError: the token is malformed.
    """
    if not token:
        return ""
    try:
        name = _from_token(token)["n"]
    except _MALFORMED:
        name = None
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError([FieldViolation(field_name, "is not a valid page token")])
    return name
