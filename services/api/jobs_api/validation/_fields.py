"""Checks of the fields every request shares: resource ids, request ids, page sizes and queue
names."""

from __future__ import annotations

import re
import uuid

from jobs_common.errors import FieldViolation, InvalidArgumentError

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "QUEUE_NAME",
    "QUEUE_NAME_RULE",
    "validate_id",
    "validate_page_size",
    "validate_queue_name",
    "validate_request_id",
]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
QUEUE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
QUEUE_NAME_RULE = "must be 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit"


def validate_request_id(request_id: str, field_name: str = "request_id") -> uuid.UUID | None:
    """An empty request_id means none; anything else must be a UUID (AIP-155)."""
    if not request_id:
        return None
    return _parse_uuid(request_id, field_name)


def validate_queue_name(value: str, field_name: str = "name") -> str:
    """A queue name as jobs name it: required here (no default)."""
    if not value:
        raise InvalidArgumentError([FieldViolation(field_name, "is required")])
    if not QUEUE_NAME.fullmatch(value):
        raise InvalidArgumentError([FieldViolation(field_name, QUEUE_NAME_RULE)])
    return value


def validate_id(value: str, field_name: str = "id") -> uuid.UUID:
    """Resource ids are UUIDs; a malformed one is INVALID_ARGUMENT, an unknown one NOT_FOUND."""
    if not value:
        raise InvalidArgumentError([FieldViolation(field_name, "is required")])
    return _parse_uuid(value, field_name)


def validate_page_size(page_size: int, field_name: str = "page_size") -> int:
    """AIP-158: 0 means the default, values above the maximum are capped, negatives are refused."""
    if page_size < 0:
        raise InvalidArgumentError([FieldViolation(field_name, "must not be negative")])
    if page_size == 0:
        return DEFAULT_PAGE_SIZE
    return min(page_size, MAX_PAGE_SIZE)


def _parse_uuid(value: str, field_name: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgumentError([FieldViolation(field_name, f"{value[:64]!r} is not a UUID")]) from None
