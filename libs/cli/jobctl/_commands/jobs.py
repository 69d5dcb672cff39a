"""``jobctl jobs``: create, get, list, update, pause, resume, run, delete and watch."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.text import Text

from jobctl._app import EXIT_JOB_FAILED, cli, output_option, session
from jobctl._commands.executions import executions_table
from jobctl._output import Printer, ago, duration, execution_state, key_values, state, table, when
from jobctl._params import BODY, DURATION, PAIR, TIME, EnumChoice
from jobs_client import cron, every, http_job, retry_policy, run_at
from jobscheduler.v1 import resources_pb2 as pb

__all__ = ["jobs"]

_METHODS = click.Choice(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"], case_sensitive=False)
_JOB_STATES = EnumChoice(pb.JobState, "JOB_STATE_")
_JOB_KINDS = EnumChoice(pb.JobKind, "JOB_KIND_")
_EXECUTION_STATES = EnumChoice(pb.ExecutionState, "EXECUTION_STATE_")
_OVERLAP = click.Choice(["skip", "allow", "buffer_one", "cancel_previous"])
_FINAL = {
    pb.EXECUTION_STATE_SUCCEEDED,
    pb.EXECUTION_STATE_DEAD,
    pb.EXECUTION_STATE_CANCELLED,
    pb.EXECUTION_STATE_SKIPPED,
}


@cli.group()
def jobs() -> None:
    """Create and manage jobs."""


def _job_state(job: pb.Job) -> Text:
    return state(pb.JobState.Name(job.state).removeprefix("JOB_STATE_").lower())


def _schedule_text(job: pb.Job) -> str:
    schedule = job.schedule
    if schedule.HasField("cron"):
        text = f"cron {schedule.cron.expression!r} in {schedule.cron.time_zone or 'UTC'}"
    elif schedule.HasField("interval"):
        text = f"every {duration(schedule.interval)}"
    elif schedule.HasField("run_at"):
        text = f"once at {when(schedule.run_at)}"
    else:
        text = "once, now"
    if schedule.max_runs:
        text += f", at most {schedule.max_runs} runs"
    return text


def _job_view(job: pb.Job) -> RenderableType:
    request = job.http_request
    rows: list[tuple[str, RenderableType | str]] = [
        ("id", job.id),
        ("state", _job_state(job)),
        ("queue", job.queue),
        ("request", f"{pb.HttpMethod.Name(request.method).removeprefix('HTTP_METHOD_')} {request.url}"),
        ("schedule", _schedule_text(job)),
        ("timeout", duration(job.timeout)),
        ("max attempts", str(job.retry_policy.max_attempts)),
        ("created", when(job.create_time)),
    ]
    if job.labels:
        rows.append(("labels", ", ".join(f"{k}={v}" for k, v in sorted(job.labels.items()))))
    if job.kind == pb.JOB_KIND_RECURRING:
        rows.append(("runs", str(job.run_count)))
        rows.append(("next run", when(job.next_run_time, job.HasField("next_run_time"))))
        if job.upcoming_run_times:
            rows.append(("upcoming", "\n".join(when(t) for t in job.upcoming_run_times)))
    if job.schedule_error:
        rows.append(("schedule error", Text(job.schedule_error, style="red")))
    if job.HasField("last_execution"):
        last = job.last_execution
        summary = Text.assemble(f"{last.id} ", execution_state(last.state), f" ({last.attempt_count} attempts)")
        rows.append(("last execution", summary))
        if last.last_error:
            rows.append(("last error", Text(last.last_error, style="red")))
    return key_values(rows)


def _jobs_table(found: Iterable[pb.Job]) -> RenderableType:
    listing = table("ID", "STATE", "QUEUE", "SCHEDULE", "LAST EXECUTION", "URL", "CREATED")
    for job in found:
        last = execution_state(job.last_execution.state) if job.HasField("last_execution") else "-"
        listing.add_row(
            job.id, _job_state(job), job.queue, _schedule_text(job), last, job.http_request.url, ago(job.create_time)
        )
    return listing


def _schedule(
    run_at_time: datetime | None,
    cron_expression: str | None,
    time_zone: str,
    interval: timedelta | None,
    max_runs: int | None,
    overlap: str | None,
) -> pb.Schedule | None:
    options = (("--run-at", run_at_time), ("--cron", cron_expression), ("--interval", interval))
    given = [name for name, value in options if value is not None]
    if len(given) > 1:
        raise click.UsageError(f"give one of --run-at, --cron and --interval, not {' and '.join(given)}")
    if (max_runs is not None or overlap is not None) and not (cron_expression or interval):
        raise click.UsageError("--max-runs and --overlap are for recurring jobs (--cron or --interval)")
    if cron_expression:
        return cron(cron_expression, time_zone, max_runs=max_runs, overlap=overlap)
    if interval is not None:
        return every(interval, max_runs=max_runs, overlap=overlap)
    if run_at_time is not None:
        return run_at(run_at_time)
    return None


def _request_options(command: Any) -> Any:
    """The options ``create`` and ``update`` share: what to call, when, how hard to try."""
    for option in reversed(
        [
            click.option("--method", "-X", type=_METHODS, help="HTTP method [POST]."),
            click.option("--header", "-H", "headers", type=PAIR, multiple=True, help="A header, NAME=VALUE."),
            click.option(
                "--secret-header", "secret_headers", multiple=True, help="A header (by name) kept sealed at rest."
            ),
            click.option("--body", "-d", type=BODY, help="Body text, @FILE or @- (standard input)."),
            click.option("--run-at", "run_at_time", type=TIME, help="Run once at this time (RFC 3339 or +10m)."),
            click.option("--cron", "cron_expression", help="Cron expression, e.g. '0 9 * * MON-FRI' or @daily."),
            click.option("--time-zone", "--tz", "time_zone", default="UTC", show_default=True, help="For --cron."),
            click.option("--interval", type=DURATION, help="Run every DURATION (30s, 5m, 1h)."),
            click.option("--max-runs", type=click.IntRange(min=1), help="Recurring: stop after this many runs."),
            click.option("--overlap", type=_OVERLAP, help="Recurring: when a run is still going [skip]."),
            click.option("--max-attempts", type=click.IntRange(min=1), help="Attempts before dead-lettering."),
            click.option("--min-backoff", type=DURATION, help="First retry delay."),
            click.option("--max-backoff", type=DURATION, help="Longest retry delay."),
            click.option("--timeout", "call_timeout", type=DURATION, help="Per-attempt deadline (at most 90s)."),
            click.option("--label", "-l", "labels", type=PAIR, multiple=True, help="A label, KEY=VALUE."),
        ]
    ):
        command = option(command)
    return command


def _retry(
    max_attempts: int | None, min_backoff: timedelta | None, max_backoff: timedelta | None
) -> pb.RetryPolicy | None:
    if max_attempts is None and min_backoff is None and max_backoff is None:
        return None
    return retry_policy(max_attempts, min_backoff=min_backoff, max_backoff=max_backoff)


@jobs.command("create")
@click.option("--url", "-u", required=True, help="The URL to call (http or https).")
@_request_options
@click.option("--queue", "-q", default="", help="Queue [default].")
@click.option("--priority", type=click.IntRange(0, 9), default=0, help="0-9: higher starts first on its queue [0].")
@click.option(
    "--flow-key", default="", help="The queue's jobs with this key share the --flow-* limits, and take turns."
)
@click.option(
    "--flow-concurrency", type=click.IntRange(0), default=0, help="Calls of the --flow-key open at once [0: any]."
)
@click.option("--flow-rate", type=click.FloatRange(0), default=0.0, help="Calls of the --flow-key a second [0: any].")
@click.option("--request-id", help="A UUID that makes the create idempotent (made for you when not given).")
@click.option("--dedup-key", default="", help="Creates with this key within --dedup-window make one job.")
@click.option("--dedup-window", type=DURATION, help="How long the --dedup-key answers its job (1s to 7d).")
@click.option("--debounce", is_flag=True, help="With --dedup-key: run once, --dedup-window after the last create.")
@click.option("--wait", is_flag=True, help="Wait for a one-off job's execution to end; exit 6 unless it succeeded.")
@output_option
def create_job(
    url: str,
    method: str | None,
    headers: tuple[tuple[str, str], ...],
    secret_headers: tuple[str, ...],
    body: bytes | None,
    run_at_time: datetime | None,
    cron_expression: str | None,
    time_zone: str,
    interval: timedelta | None,
    max_runs: int | None,
    overlap: str | None,
    max_attempts: int | None,
    min_backoff: timedelta | None,
    max_backoff: timedelta | None,
    call_timeout: timedelta | None,
    labels: tuple[tuple[str, str], ...],
    queue: str,
    priority: int,
    flow_key: str,
    flow_concurrency: int,
    flow_rate: float,
    request_id: str | None,
    dedup_key: str,
    dedup_window: timedelta | None,
    debounce: bool,
    wait: bool,
) -> int | None:
    """Create a job that calls URL: now, at --run-at, or on a --cron / --interval schedule."""
    if (flow_concurrency or flow_rate) and not flow_key:
        raise click.UsageError("--flow-concurrency and --flow-rate limit a --flow-key: give one")
    schedule = _schedule(run_at_time, cron_expression, time_zone, interval, max_runs, overlap)
    job = http_job(
        url,
        method=method or "POST",
        headers=dict(headers),
        body=body or b"",
        secret_headers=secret_headers,
        queue=queue,
        labels=dict(labels),
        timeout=call_timeout,
        retry=_retry(max_attempts, min_backoff, max_backoff),
        schedule=schedule,
        priority=priority,
        flow_key=flow_key,
        flow_max_concurrent=flow_concurrency,
        flow_max_per_second=flow_rate,
    )
    current = session()
    made = current.client.create_job(
        job,
        request_id=request_id,
        deduplication_key=dedup_key,
        deduplication_window=dedup_window,
        debounce=debounce,
    )
    if wait and made.kind == pb.JOB_KIND_ONE_OFF:
        return _follow(made.id, current.printer, quiet=True)
    current.printer.show(made, lambda: _job_view(made))
    return None


@jobs.command("get")
@click.argument("job_id")
@output_option
def get_job(job_id: str) -> None:
    """Show a job: its request, schedule, next runs and last execution."""
    current = session()
    job = current.client.get_job(job_id)
    current.printer.show(job, lambda: _job_view(job))


@jobs.command("list")
@click.option("--queue", "-q", default="", help="Only this queue's jobs.")
@click.option("--state", "job_state", type=_JOB_STATES, help="Only jobs in this state.")
@click.option("--kind", type=_JOB_KINDS, help="one_off or recurring.")
@click.option("--last-execution-state", type=_EXECUTION_STATES, help="Only jobs whose last execution is in this state.")
@click.option("--label", "-l", "labels", type=PAIR, multiple=True, help="Only jobs with this label, KEY=VALUE.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="At most this many.")
@click.option("--full", is_flag=True, help="With headers and bodies (JSON/YAML output).")
@output_option
def list_jobs(
    queue: str,
    job_state: int | None,
    kind: int | None,
    last_execution_state: int | None,
    labels: tuple[tuple[str, str], ...],
    limit: int,
    full: bool,
) -> None:
    """List jobs, newest first."""
    current = session()
    listing = current.client.list_jobs(
        queue=queue,
        state=pb.JobState.ValueType(job_state or 0),
        kind=pb.JobKind.ValueType(kind or 0),
        last_execution_state=pb.ExecutionState.ValueType(last_execution_state or 0),
        labels=dict(labels),
        full=full,
        page_size=min(limit, 1000),
    )
    found = list(islice(listing, limit))
    current.printer.listing("jobs", found, lambda: _jobs_table(found))


@jobs.command("update")
@click.argument("job_id")
@click.option("--url", "-u", help="The URL to call.")
@_request_options
@output_option
def update_job(
    job_id: str,
    url: str | None,
    method: str | None,
    headers: tuple[tuple[str, str], ...],
    secret_headers: tuple[str, ...],
    body: bytes | None,
    run_at_time: datetime | None,
    cron_expression: str | None,
    time_zone: str,
    interval: timedelta | None,
    max_runs: int | None,
    overlap: str | None,
    max_attempts: int | None,
    min_backoff: timedelta | None,
    max_backoff: timedelta | None,
    call_timeout: timedelta | None,
    labels: tuple[tuple[str, str], ...],
) -> None:
    """Change what the options name and nothing else (headers and labels are replaced whole)."""
    job = pb.Job(id=job_id)
    paths: list[str] = []
    if url is not None:
        job.http_request.url = url
        paths.append("http_request.url")
    if method is not None:
        job.http_request.method = pb.HttpMethod.Value(f"HTTP_METHOD_{method.upper()}")
        paths.append("http_request.method")
    if headers:
        job.http_request.headers.update(dict(headers))
        paths.append("http_request.headers")
    if secret_headers:
        job.http_request.secret_headers.extend(secret_headers)
        paths.append("http_request.secret_headers")
    if body is not None:
        job.http_request.body = body
        paths.append("http_request.body")
    schedule = _schedule(run_at_time, cron_expression, time_zone, interval, max_runs, overlap)
    if schedule is not None:
        job.schedule.CopyFrom(schedule)
        paths.append("schedule")
    for path, value in (
        ("retry_policy.max_attempts", max_attempts),
        ("retry_policy.min_backoff", min_backoff),
        ("retry_policy.max_backoff", max_backoff),
        ("timeout", call_timeout),
    ):
        if value is not None:
            paths.append(path)
    policy = _retry(max_attempts, min_backoff, max_backoff)
    if policy is not None:
        job.retry_policy.CopyFrom(policy)
    if call_timeout is not None:
        job.timeout.FromTimedelta(call_timeout)
    if labels:
        job.labels.update(dict(labels))
        paths.append("labels")
    if not paths:
        raise click.UsageError("nothing to change: give at least one option (see jobctl jobs update --help)")
    current = session()
    updated = current.client.update_job(job, paths)
    current.printer.show(updated, lambda: _job_view(updated))


def _job_action(name: str, summary: str) -> None:
    @jobs.command(name, help=summary)
    @click.argument("job_id")
    @output_option
    def action(job_id: str) -> None:
        current = session()
        job = getattr(current.client, f"{name}_job")(job_id)
        current.printer.show(job, lambda: _job_view(job))


_job_action("pause", "Pause a recurring job: no tick runs until it is resumed.")
_job_action("resume", "Resume a paused recurring job from its next tick.")
_job_action("delete", "Delete a job and cancel its unfinished executions.")


@jobs.command("run")
@click.argument("job_id")
@output_option
def run_job(job_id: str) -> None:
    """Run a recurring job now, outside its schedule (under its overlap policy)."""
    current = session()
    ran = current.client.run_job(job_id)

    def view() -> RenderableType:
        if ran.buffered:
            return Text("buffered: it runs once the unfinished execution ends")
        return executions_table([ran.execution])

    current.printer.show(ran, view)


@jobs.command("watch")
@click.argument("job_id")
@output_option
def watch_job(job_id: str) -> int:
    """Follow a job live; ends when a one-off job's execution is final (Ctrl-C otherwise).

    Exits 0 when it ends SUCCEEDED (or SKIPPED), 6 when DEAD or CANCELLED. With -o json each
    change is one line of JSON (a WatchJobResponse)."""
    current = session()
    return _follow(job_id, current.printer, quiet=False)


def _follow(job_id: str, printer: Printer, *, quiet: bool) -> int:
    """Watches the job; prints each change (or, when ``quiet``, only the end) and answers the exit code."""
    last: pb.Execution | None = None
    job: pb.Job | None = None
    changes = session().client.watch(job_id)
    # Text, not str: a spinner reads markup in a str, and the id is what the user typed.
    with printer.err.status(Text(f"watching job {job_id}"), spinner="dots") as status:
        for change in changes:
            if change.HasField("job"):
                job = change.job
            if change.HasField("execution"):
                last = change.execution
                status.update(
                    Text.assemble(f"job {job_id}: ", execution_state(last.state), f", attempt {last.attempt_count}")
                )
            if quiet:
                continue
            if not printer.for_people:
                printer.stream_item(change)
            elif change.HasField("execution"):
                printer.out.print(_change_line(change.execution))
            elif job is not None:
                printer.out.print(Text.assemble(f"{when(job.update_time)}  job ", _job_state(job)))
    if quiet and job is not None:
        final = session().client.get_job(job_id)
        printer.show(final, lambda: _job_view(final))
    if last is not None and last.state in (pb.EXECUTION_STATE_DEAD, pb.EXECUTION_STATE_CANCELLED):
        return EXIT_JOB_FAILED
    return 0


def _change_line(execution: pb.Execution) -> RenderableType:
    parts = [
        Text(when(execution.create_time if execution.state <= pb.EXECUTION_STATE_QUEUED else execution.start_time)),
        Text.assemble(f"  execution {execution.id}  ", execution_state(execution.state)),
        Text(f"  attempt {execution.attempt_count}" if execution.attempt_count else ""),
    ]
    line = Text.assemble(*parts)
    if execution.last_error and execution.state in _FINAL | {pb.EXECUTION_STATE_RETRY_SCHEDULED}:
        return Group(line, Text(f"    {execution.last_error}", style="red"))
    return line
