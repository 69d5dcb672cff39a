"""How jobctl prints an answer: ``table`` (Rich, for people), ``json`` (the API's own JSON
mapping, as grpcurl prints it: stable for scripts) or ``yaml`` (the same document)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

import click
import yaml
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from jobscheduler.v1 import resources_pb2 as pb

__all__ = ["FORMATS", "Printer", "ago", "duration", "key_values", "state", "table", "when"]

FORMATS = ("table", "json", "yaml")

_STATE_STYLES = {
    "succeeded": "green",
    "dead": "red",
    "cancelled": "yellow",
    "skipped": "yellow",
    "running": "cyan",
    "retry_scheduled": "magenta",
    "paused": "yellow",
    "active": "green",
}


class Printer:
    """Prints one answer in the chosen format to standard output; notes and progress go to
    standard error so that ``-o json`` output stays a clean document."""

    def __init__(self, output: str) -> None:
        self.output = output
        # No markup: ids, URLs and error texts come from users and targets, and "[/x]" in one
        # would be read as a tag (and fail). jobctl's own styles are Text objects.
        self.out = Console(highlight=False, soft_wrap=False, markup=False)
        if not self.out.is_terminal and "COLUMNS" not in os.environ:
            self.out.width = 240  # piped into grep or a file: keep each row on one line
        self.err = Console(stderr=True, highlight=False, markup=False)

    @property
    def for_people(self) -> bool:
        return self.output == "table"

    def document(self, answer: Message | dict[str, object]) -> None:
        """``answer`` as JSON or YAML (a message by the proto3 JSON mapping)."""
        data = json_format.MessageToDict(answer) if isinstance(answer, Message) else answer
        if self.output == "yaml":
            click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)
        else:
            click.echo(json.dumps(data, indent=2, ensure_ascii=False))

    def stream_item(self, answer: Message) -> None:
        """One message of a stream: a line of JSON, or a YAML document after ``---``."""
        data = json_format.MessageToDict(answer)
        if self.output == "yaml":
            click.echo("---\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)
        else:
            click.echo(json.dumps(data, ensure_ascii=False))

    def show(self, answer: Message | dict[str, object], render: Callable[[], RenderableType]) -> None:
        """``render()`` for people, the document otherwise."""
        if self.for_people:
            self.out.print(render())
        else:
            self.document(answer)

    def listing(self, key: str, items: Sequence[Message], render: Callable[[], RenderableType]) -> None:
        """A list: ``{key: [...]}`` as the List call answers it (every page in one document)."""
        self.show({key: [json_format.MessageToDict(item) for item in items]}, render)

    def note(self, text: str) -> None:
        self.err.print(text)


# Ids are never cut (people copy them); long free text is, on one line.
_WHOLE = {"ID", "JOB", "NAME", "QUEUE"}
_CUT = {"URL", "LAST ERROR", "ERROR", "RESPONSE"}


def table(*columns: str) -> Table:
    listing = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        if column in _WHOLE:
            listing.add_column(column, no_wrap=True)
        elif column in _CUT:
            listing.add_column(column, no_wrap=True, overflow="ellipsis", max_width=60)
        else:
            listing.add_column(column)
    return listing


def key_values(rows: Iterable[tuple[str, RenderableType | str]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for name, value in rows:
        grid.add_row(name, value)
    return grid


def when(value: Timestamp, is_set: bool = True) -> str:
    """A timestamp in UTC to the second, or "-" when unset."""
    if not is_set or (value.seconds == 0 and value.nanos == 0):
        return "-"
    return value.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def ago(value: Timestamp) -> str:
    if value.seconds == 0 and value.nanos == 0:
        return "-"
    return duration_text(datetime.now(UTC) - value.ToDatetime(tzinfo=UTC)) + " ago"


def duration(value: Duration, is_set: bool = True) -> str:
    return duration_text(value.ToTimedelta()) if is_set else "-"


def duration_text(value: timedelta) -> str:
    seconds = value.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24}h"


def state(name: str) -> Text:
    """An enum value's short name, coloured for a terminal."""
    return Text(name, style=_STATE_STYLES.get(name, ""))


def execution_state(number: pb.ExecutionState.ValueType) -> Text:
    return state(pb.ExecutionState.Name(number).removeprefix("EXECUTION_STATE_").lower())
