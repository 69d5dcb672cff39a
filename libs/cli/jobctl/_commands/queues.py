"""``jobctl queues`` (list, stats, pause, resume, update) and ``jobctl workers list``."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import click
from rich.console import RenderableType
from rich.text import Text

from jobctl._app import cli, output_option, session
from jobctl._output import ago, duration, key_values, state, table, when
from jobctl._params import DURATION
from jobs_client import describe_rate_limits
from jobscheduler.v1 import queue_service_pb2 as qpb

__all__ = ["queues", "workers"]


@cli.group()
def queues() -> None:
    """Queues: their state, figures and settings."""


def _retention(value: timedelta) -> str:
    return "forever" if not value else duration_of(value)


def duration_of(value: timedelta) -> str:
    days, rest = divmod(int(value.total_seconds()), 86400)
    return f"{days}d" if not rest else (f"{days}d{rest // 3600}h" if days else f"{rest // 3600}h{rest % 3600 // 60}m")


def _paused(queue: qpb.Queue) -> Text:
    return state("paused") if queue.paused else state("active")


def _queues_table(found: Iterable[qpb.Queue]) -> RenderableType:
    listing = table("NAME", "STATE", "PAUSED SINCE", "HISTORY KEPT", "DEAD LETTERS KEPT", "RATE LIMITS")
    for queue in found:
        listing.add_row(
            queue.name,
            _paused(queue),
            when(queue.pause_time, queue.paused),
            _retention(queue.history_retention.ToTimedelta()),
            _retention(queue.dead_letter_retention.ToTimedelta()),
            describe_rate_limits(queue.rate_limits),
        )
    return listing


def _queue_view(queue: qpb.Queue) -> RenderableType:
    return _queues_table([queue])


def _stats_view(stats: qpb.GetQueueStatsResponse) -> RenderableType:
    rows: list[tuple[str, RenderableType | str]] = [
        ("queue", stats.queue.name),
        ("state", _paused(stats.queue)),
        ("scheduled", str(stats.scheduled)),
        ("queued", str(stats.queued)),
        ("running", str(stats.running)),
        ("retry scheduled", str(stats.retry_scheduled)),
        ("oldest ready", duration(stats.oldest_ready_age)),
        (
            "last minute",
            f"{stats.started_last_minute} started, {stats.succeeded_last_minute} succeeded, "
            f"{stats.failed_last_minute} dead",
        ),
        (
            "last hour",
            f"{stats.started_last_hour} started, {stats.succeeded_last_hour} succeeded, {stats.failed_last_hour} dead",
        ),
    ]
    if stats.attempt_duration_sample:
        rows.append(
            (
                "attempt duration",
                f"p50 {duration(stats.attempt_duration_p50)}, p95 {duration(stats.attempt_duration_p95)} "
                f"(last {stats.attempt_duration_sample})",
            )
        )
    limits = describe_rate_limits(stats.queue.rate_limits)
    if limits != "none":
        limits += (
            f"; {stats.open_dispatches} open, {stats.waiting_for_concurrency} waiting for a slot,"
            f" {stats.waiting_for_rate} for a token"
        )
    rows.append(("rate limits", limits))
    if stats.flow_keys:
        rows.append(
            (
                "flow keys",
                f"{stats.flow_keys} with jobs ready; {stats.waiting_for_key_concurrency} waiting for their key's slot,"
                f" {stats.waiting_for_key_rate} for its token",
            )
        )
        busiest = (f"{k.key} ({k.ready} ready, {k.open} open)" for k in stats.busiest_flow_keys)
        rows.append(("busiest keys", ", ".join(busiest)))
    return key_values(rows)


@queues.command("list")
@output_option
def list_queues() -> None:
    """List every queue that has jobs or settings."""
    current = session()
    found = list(current.client.list_queues())
    current.printer.listing("queues", found, lambda: _queues_table(found))


@queues.command("stats")
@click.argument("name")
@output_option
def queue_stats(name: str) -> None:
    """A queue's depth by state, throughput and attempt durations."""
    current = session()
    stats = current.client.get_queue_stats(name)
    current.printer.show(stats, lambda: _stats_view(stats))


@queues.command("pause")
@click.argument("name")
@output_option
def pause_queue(name: str) -> None:
    """Stop workers claiming the queue's jobs (running calls finish)."""
    current = session()
    queue = current.client.pause_queue(name)
    current.printer.show(queue, lambda: _queue_view(queue))


@queues.command("resume")
@click.argument("name")
@output_option
def resume_queue(name: str) -> None:
    """Let workers claim the queue's jobs again."""
    current = session()
    queue = current.client.resume_queue(name)
    current.printer.show(queue, lambda: _queue_view(queue))


@queues.command("update")
@click.argument("name")
@click.option("--history-retention", type=DURATION, help="Keep finished executions this long (0: forever).")
@click.option("--dead-letter-retention", type=DURATION, help="Keep dead letters this long (0: forever).")
@click.option(
    "--max-dispatches-per-second", type=click.FloatRange(0), help="Calls started a second, at most (0: no limit)."
)
@click.option("--max-burst-size", type=click.IntRange(0), help="Calls that may start at once (0: the rate rounded up).")
@click.option("--max-concurrent-dispatches", type=click.IntRange(0), help="Calls open at once, at most (0: no limit).")
@click.option(
    "--reset",
    multiple=True,
    type=click.Choice(["history_retention", "dead_letter_retention", "rate_limits"]),
    help="Put a setting back to the server's default (rate_limits: no limits).",
)
@output_option
def update_queue(
    name: str,
    history_retention: timedelta | None,
    dead_letter_retention: timedelta | None,
    max_dispatches_per_second: float | None,
    max_burst_size: int | None,
    max_concurrent_dispatches: int | None,
    reset: tuple[str, ...],
) -> None:
    """Change a queue's settings (a new name gets settings of its own)."""
    given = (
        history_retention,
        dead_letter_retention,
        max_dispatches_per_second,
        max_burst_size,
        max_concurrent_dispatches,
    )
    if all(value is None for value in given) and not reset:
        raise click.UsageError("nothing to change: give a setting's option or --reset")
    current = session()
    queue = current.client.update_queue(
        name,
        history_retention=history_retention,
        dead_letter_retention=dead_letter_retention,
        max_dispatches_per_second=max_dispatches_per_second,
        max_burst_size=max_burst_size,
        max_concurrent_dispatches=max_concurrent_dispatches,
        reset=reset,
    )
    current.printer.show(queue, lambda: _queue_view(queue))


@cli.group()
def workers() -> None:
    """Live workers."""


def _workers_table(found: Iterable[qpb.Worker]) -> RenderableType:
    listing = table("ID", "QUEUE", "IN FLIGHT", "LOAD", "HEARTBEAT", "STARTED", "VERSION")
    for worker in found:
        load = worker.in_flight / worker.capacity if worker.capacity else 0.0
        style = "red" if load >= 0.9 else ("yellow" if load >= 0.6 else "green")
        listing.add_row(
            worker.id,
            worker.queue,
            f"{worker.in_flight}/{worker.capacity}",
            Text(f"{load:.0%}", style=style),
            ago(worker.last_heartbeat_time),
            ago(worker.start_time),
            worker.version,
        )
    return listing


@workers.command("list")
@click.option("--queue", "-q", default="", help="Only this queue's workers.")
@output_option
def list_workers(queue: str) -> None:
    """List live workers with their load and last heartbeat."""
    current = session()
    found = current.client.list_workers(queue=queue)
    current.printer.listing("workers", found, lambda: _workers_table(found))
