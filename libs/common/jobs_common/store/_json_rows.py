"""Rows as JSON for ``jsonb_populate_recordset``: many rows of a table in one parameter, so one
statement inserts a whole batch whatever its size (a VALUES list would need a statement per
size, and ``unnest`` cannot carry a column that is itself an array)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime

__all__ = ["json_rows"]


def _value(value: object) -> object:
    """What PostgreSQL's input function of the column's type reads back as ``value``."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    raise TypeError(f"no JSON form for a column value of type {type(value).__name__}")


# Numbers, text, booleans, lists (arrays) and dicts (jsonb) go as they are; the encoder asks
# _value only for the other values.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_value)


def json_rows(rows: Iterable[Mapping[str, object]]) -> str:
    """A JSON array of objects, one per row, for ``jsonb_populate_recordset(NULL::table, ...)``:
    a column a row leaves out is NULL, not its default, so every row names every column."""
    return _ENCODER.encode(list(rows))
