"""``jobctl dead-letters``: list, replay and purge DEAD executions, by id or by filter."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from itertools import islice
from typing import Any

import click

from jobctl._app import cli, output_option, session
from jobctl._commands.executions import executions_table
from jobctl._params import TIME, EnumChoice
from jobscheduler.v1 import resources_pb2 as pb

__all__ = ["dead_letters"]

_ERROR_KINDS = EnumChoice(pb.ErrorKind, "ERROR_KIND_")


@cli.group("dead-letters")
def dead_letters() -> None:
    """Executions that used every attempt (DEAD and not replayed)."""


def _filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option("--queue", "-q", default="", help="Only this queue's."),
            click.option("--job", "job_id", default="", help="Only this job's."),
            click.option("--error-kind", type=_ERROR_KINDS, help="Only those whose last attempt failed so."),
            click.option("--ended-after", type=TIME, help="Ended at or after (RFC 3339 or +/-duration)."),
            click.option("--ended-before", type=TIME, help="Ended before."),
        ]
    ):
        command = option(command)
    return command


def _criteria(
    queue: str, job_id: str, error_kind: int | None, ended_after: datetime | None, ended_before: datetime | None
) -> dict[str, Any]:
    return {
        "queue": queue,
        "job_id": job_id,
        "error_kind": error_kind or pb.ERROR_KIND_UNSPECIFIED,
        "ended_after": ended_after,
        "ended_before": ended_before,
    }


@dead_letters.command("list")
@_filter_options
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="At most this many.")
@output_option
def list_dead_letters(
    queue: str,
    job_id: str,
    error_kind: int | None,
    ended_after: datetime | None,
    ended_before: datetime | None,
    limit: int,
) -> None:
    """List dead letters, newest first."""
    current = session()
    criteria = _criteria(queue, job_id, error_kind, ended_after, ended_before)
    found = list(islice(current.client.list_dead_letters(**criteria, page_size=min(limit, 1000)), limit))
    current.printer.listing("executions", found, lambda: executions_table(found))


@dead_letters.command("replay")
@click.argument("ids", nargs=-1)
@_filter_options
@click.option(
    "--limit", type=click.IntRange(min=1, max=1000), default=100, show_default=True, help="By filter: at most."
)
@output_option
def replay_dead_letters(
    ids: tuple[str, ...],
    queue: str,
    job_id: str,
    error_kind: int | None,
    ended_after: datetime | None,
    ended_before: datetime | None,
    limit: int,
) -> None:
    """Replay the dead letters IDS, or (without ids) up to --limit of those matching the filter."""
    criteria = _criteria(queue, job_id, error_kind, ended_after, ended_before)
    if not ids and not any(criteria.values()):
        raise click.UsageError("give dead-letter ids or a filter (--queue, --job, --error-kind, --ended-*)")
    current = session()
    answer = current.client.replay_dead_letters(ids, **criteria, limit=limit)
    for skipped in answer.skipped_ids:
        current.printer.note(f"skipped {skipped}: not a dead letter (unknown, not DEAD or already replayed)")
    current.printer.show(answer, lambda: executions_table(answer.executions))


@dead_letters.command("purge")
@_filter_options
@click.option("--limit", type=click.IntRange(min=1, max=10000), default=1000, show_default=True, help="At most.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@output_option
def purge_dead_letters(
    queue: str,
    job_id: str,
    error_kind: int | None,
    ended_after: datetime | None,
    ended_before: datetime | None,
    limit: int,
    yes: bool,
) -> None:
    """Delete dead letters matching the filter (oldest first), with their attempts."""
    criteria = _criteria(queue, job_id, error_kind, ended_after, ended_before)
    scope = ", ".join(f"{k}={v}" for k, v in criteria.items() if v) or "every queue"
    if not yes:
        click.confirm(f"Delete up to {limit} dead letters ({scope})? This cannot be undone", abort=True, err=True)
    current = session()
    purged = current.client.purge_dead_letters(**criteria, limit=limit)
    current.printer.show({"purged": str(purged)}, lambda: f"purged {purged} dead letters")
