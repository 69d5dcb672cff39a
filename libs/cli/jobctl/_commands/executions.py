"""``jobctl executions``: list a job's executions, get one with its attempts, cancel, replay."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

import click
from rich.console import Group, RenderableType
from rich.text import Text

from jobctl._app import cli, output_option, session
from jobctl._output import ago, duration, execution_state, key_values, table, when
from jobctl._params import enum_name
from jobscheduler.v1 import resources_pb2 as pb

__all__ = ["executions", "executions_table"]

_EXCERPT = 200  # bytes of a response body shown in a table


@cli.group()
def executions() -> None:
    """Executions (runs) of jobs and their attempts."""


def executions_table(found: Iterable[pb.Execution]) -> RenderableType:
    listing = table("ID", "JOB", "STATE", "ATTEMPTS", "SCHEDULED", "ENDED", "LAST ERROR")
    for execution in found:
        listing.add_row(
            execution.id,
            execution.job_id,
            execution_state(execution.state),
            str(execution.attempt_count),
            when(execution.schedule_time),
            ago(execution.end_time),
            Text(execution.last_error, style="red") if execution.last_error else "",
        )
    return listing


def excerpt(body: bytes, truncated: bool) -> str:
    text = " ".join(body[:_EXCERPT].decode("utf-8", errors="replace").split())
    return text + ("…" if truncated or len(body) > _EXCERPT else "")


def attempts_table(attempts: Iterable[pb.Attempt]) -> RenderableType:
    listing = table("#", "STARTED", "DURATION", "STATUS", "ERROR", "WORKER", "RESPONSE")
    for attempt in attempts:
        error = ""
        if attempt.error_kind:
            error = f"{enum_name(pb.ErrorKind, 'ERROR_KIND_', attempt.error_kind)}: {attempt.error_message}"
        listing.add_row(
            str(attempt.number) + (" (superseded)" if attempt.superseded else ""),
            when(attempt.start_time),
            duration(attempt.duration, attempt.HasField("duration")),
            str(attempt.response_status_code or "-"),
            Text(error, style="red") if error else "",
            attempt.worker_id,
            excerpt(attempt.response_body, attempt.response_body_truncated),
        )
    return listing


def execution_view(execution: pb.Execution) -> RenderableType:
    rows: list[tuple[str, RenderableType | str]] = [
        ("id", execution.id),
        ("job", execution.job_id),
        ("state", execution_state(execution.state)),
        ("scheduled", when(execution.schedule_time)),
        ("started", when(execution.start_time)),
        ("ended", when(execution.end_time)),
        ("attempts", str(execution.attempt_count)),
    ]
    if execution.replay_of:
        rows.append(("replay of", execution.replay_of))
    if execution.last_error:
        rows.append(("last error", Text(execution.last_error, style="red")))
    if not execution.attempts:
        return key_values(rows)
    return Group(key_values(rows), Text(""), attempts_table(execution.attempts))


@executions.command("list")
@click.argument("job_id")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many.")
@output_option
def list_executions(job_id: str, limit: int) -> None:
    """List a job's executions, newest first."""
    current = session()
    found = list(islice(current.client.list_executions(job_id, page_size=min(limit, 1000)), limit))
    current.printer.listing("executions", found, lambda: executions_table(found))


@executions.command("get")
@click.argument("execution_id")
@output_option
def get_execution(execution_id: str) -> None:
    """Show an execution with every attempt: status, duration, error and response excerpt."""
    current = session()
    execution = current.client.get_execution(execution_id)
    current.printer.show(execution, lambda: execution_view(execution))


@executions.command("cancel")
@click.argument("execution_id")
@output_option
def cancel_execution(execution_id: str) -> None:
    """Cancel an unfinished execution (a running call is interrupted)."""
    current = session()
    execution = current.client.cancel_execution(execution_id)
    current.printer.show(execution, lambda: execution_view(execution))


@executions.command("replay")
@click.argument("execution_id")
@output_option
def replay_execution(execution_id: str) -> None:
    """Run a DEAD or CANCELLED execution again (once: asking again answers the same replay)."""
    current = session()
    execution = current.client.replay_execution(execution_id)
    current.printer.show(execution, lambda: execution_view(execution))
