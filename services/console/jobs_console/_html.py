"""The console's HTML: one layout, and a function per page or live fragment. Every value from
the API goes through ``esc``; nothing here calls the API."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from urllib.parse import urlencode

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from jobs_client import describe_rate_limits
from jobscheduler.v1 import queue_service_pb2 as qpb
from jobscheduler.v1 import resources_pb2 as pb

__all__ = [
    "dead_letters_page",
    "error_page",
    "execution_fragment",
    "execution_page",
    "job_fragment",
    "job_page",
    "jobs_page",
    "layout",
    "login_page",
    "purge_confirmation_page",
    "queues_fragment",
    "queues_page",
    "workers_fragment",
    "workers_page",
]

_EXCERPT = 300
_NONE = "&ndash;"  # an unset value
_NAV = (("/", "Queues"), ("/jobs", "Jobs"), ("/dead-letters", "Dead letters"), ("/workers", "Workers"))


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def _set(value: Timestamp) -> bool:
    return bool(value.seconds or value.nanos)


def when(value: Timestamp) -> str:
    if not _set(value):
        return _NONE
    moment = value.ToDatetime(tzinfo=UTC)
    return f'<time datetime="{moment.isoformat()}">{moment.strftime("%Y-%m-%d %H:%M:%S")}Z</time>'


def seconds(value: Duration) -> str:
    total = value.ToTimedelta().total_seconds()
    if total < 1:
        return f"{total * 1000:.0f} ms"
    if total < 120:
        return f"{total:.1f} s"
    if total < 7200:
        return f"{total / 60:.1f} min"
    if total < 172800:
        return f"{total / 3600:.1f} h"
    return f"{total / 86400:.0f} d"


def ago(value: Timestamp) -> str:
    if not _set(value):
        return _NONE
    elapsed = (datetime.now(UTC) - value.ToDatetime(tzinfo=UTC)).total_seconds()
    return f"{elapsed:.1f} s ago" if elapsed < 120 else f"{elapsed / 60:.0f} min ago"


def execution_state(number: pb.ExecutionState.ValueType) -> str:
    name = pb.ExecutionState.Name(number).removeprefix("EXECUTION_STATE_")
    return f'<span class="state state-{name.lower()}">{name}</span>'


def job_state(number: pb.JobState.ValueType) -> str:
    name = pb.JobState.Name(number).removeprefix("JOB_STATE_")
    return f'<span class="state state-{name.lower()}">{name}</span>'


def error_kind(number: pb.ErrorKind.ValueType) -> str:
    return pb.ErrorKind.Name(number).removeprefix("ERROR_KIND_").lower() if number else ""


def _link(path: str, text: str) -> str:
    return f'<a href="{esc(path)}" class="id">{esc(text)}</a>'


def _button(action: str, label: str, fields: Mapping[str, str] | None = None, *, danger: bool = False) -> str:
    hidden = "".join(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in (fields or {}).items())
    kind = "danger" if danger else "secondary"
    button = f'<button class="{kind}">{esc(label)}</button>'
    return f'<form method="post" action="{esc(action)}" class="inline">{hidden}{button}</form>'


def layout(title: str, body: str, *, active: str = "", signed_in: bool = True, notice: str = "") -> str:
    nav = "".join(f'<a href="{path}" class="{"active" if path == active else ""}">{name}</a>' for path, name in _NAV)
    account = _button("/logout", "Sign out") if signed_in else ""
    flash = f'<p class="notice" role="status">{esc(notice)}</p>' if notice else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · job-scheduler</title><link rel="stylesheet" href="/static/console.css">
<script src="/static/console.js" defer></script></head>
<body><header><span class="brand">job-scheduler</span><nav>{nav if signed_in else ""}</nav>{account}</header>
<main><h1>{esc(title)}</h1>{flash}{body}</main></body></html>"""


def error_page(title: str, message: str, violations: Mapping[str, str] | None = None, *, signed_in: bool = True) -> str:
    items = "".join(f"<li><code>{esc(k)}</code>: {esc(v)}</li>" for k, v in (violations or {}).items())
    details = f"<ul>{items}</ul>" if items else ""
    back = '<p><a href="javascript:history.back()">Back</a> · <a href="/">Queues</a></p>' if signed_in else ""
    return layout(title, f'<p class="error" role="alert">{esc(message)}</p>{details}{back}', signed_in=signed_in)


def login_page(next_path: str, problem: str = "") -> str:
    alert = f'<p class="error" role="alert">{esc(problem)}</p>' if problem else ""
    body = f"""{alert}<form method="post" action="/login" class="login">
<label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="{esc(next_path)}">
<button>Sign in</button>
<p class="hint">The same bearer token as the API's (<code>API_TOKENS</code>); it is kept in a cookie
only this console reads.</p></form>"""
    return layout("Sign in", body, signed_in=False)


# Queues.

_QUEUE_FIGURES = ("scheduled", "queued", "running", "retry_scheduled")


def queues_fragment(stats: Sequence[qpb.GetQueueStatsResponse]) -> str:
    rows = []
    for s in stats:
        name = s.queue.name
        action = ("/queues/resume", "Resume") if s.queue.paused else ("/queues/pause", "Pause")
        state = (
            '<span class="state state-paused">PAUSED</span>'
            if s.queue.paused
            else ('<span class="state state-active">ACTIVE</span>')
        )
        figures = "".join(
            f'<td class="num" data-q="{esc(name)}" data-f="{f}">{getattr(s, f)}</td>' for f in _QUEUE_FIGURES
        )
        rows.append(
            f'<tr data-queue="{esc(name)}"><td>{_link("/jobs?" + urlencode({"queue": name}), name)}</td>'
            f"<td>{state}</td>"
            f"{figures}"
            f'<td class="num">{s.started_last_minute}</td><td class="num">{s.succeeded_last_minute}</td>'
            f'<td class="num">{s.failed_last_minute}</td><td>{seconds(s.oldest_ready_age)}</td>'
            f"<td>{esc(describe_rate_limits(s.queue.rate_limits))}</td>"
            f"<td>{_button(action[0], action[1], {'name': name})}</td></tr>"
        )
    head = (
        "<tr><th>Queue</th><th>State</th><th>Scheduled</th><th>Queued</th><th>Running</th><th>Retrying</th>"
        "<th>Started/min</th><th>Succeeded/min</th><th>Dead/min</th><th>Oldest ready</th><th>Rate limits</th>"
        "<th></th></tr>"
    )
    empty = '<tr><td colspan="12">No queues yet: create a job.</td></tr>' if not rows else ""
    return f'<table class="grid" id="queues-table"><thead>{head}</thead><tbody>{"".join(rows)}{empty}</tbody></table>'


def queues_page(stats: Sequence[qpb.GetQueueStatsResponse], notice: str = "") -> str:
    body = f"""<section class="chart" aria-label="Depth and throughput">
<div class="legend">All queues, live (up to the last 5 minutes):<span class="key depth"></span>waiting and running
<strong id="chart-waiting">&ndash;</strong><span class="key rate"></span>succeeded in the last minute
<strong id="chart-rate">&ndash;</strong> <span class="hint" id="chart-scale"></span></div>
<svg id="queues-chart" viewBox="0 0 600 160" preserveAspectRatio="none" role="img"></svg></section>
<div data-live="/events/queues" data-fragment="/fragments/queues" data-kind="queues">{queues_fragment(stats)}</div>"""
    return layout("Queues", body, active="/", notice=notice)


# Jobs.


def _schedule(job: pb.Job) -> str:
    schedule = job.schedule
    if schedule.HasField("cron"):
        return f"cron <code>{esc(schedule.cron.expression)}</code> in {esc(schedule.cron.time_zone or 'UTC')}"
    if schedule.HasField("interval"):
        return f"every {seconds(schedule.interval)}"
    if schedule.HasField("run_at"):
        return f"once at {when(schedule.run_at)}"
    return "once, now"


def _method(job: pb.Job) -> str:
    return pb.HttpMethod.Name(job.http_request.method).removeprefix("HTTP_METHOD_")


def jobs_page(jobs: Iterable[pb.Job], queue: str, notice: str = "") -> str:
    rows = "".join(
        f"<tr><td>{_link('/jobs/' + j.id, j.id)}</td><td>{job_state(j.state)}</td><td>{esc(j.queue)}</td>"
        f"<td>{_schedule(j)}</td>"
        f"<td>{execution_state(j.last_execution.state) if j.HasField('last_execution') else _NONE}</td>"
        f'<td class="url">{esc(_method(j))} {esc(j.http_request.url)}</td><td>{when(j.create_time)}</td></tr>'
        for j in jobs
    )
    form = f"""<form method="get" class="filters"><label>Queue <input name="queue" value="{esc(queue)}"></label>
<button>Filter</button></form>"""
    table = (
        '<table class="grid"><thead><tr><th>Job</th><th>State</th><th>Queue</th><th>Schedule</th>'
        f"<th>Last execution</th><th>Request</th><th>Created</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    return layout("Jobs", form + table, active="/jobs", notice=notice)


def _executions_table(executions: Iterable[pb.Execution]) -> str:
    rows = "".join(
        f"<tr><td>{_link('/executions/' + e.id, e.id)}</td><td>{execution_state(e.state)}</td>"
        f'<td class="num">{e.attempt_count}</td><td>{when(e.schedule_time)}</td><td>{when(e.end_time)}</td>'
        f'<td class="error-text">{esc(e.last_error)}</td></tr>'
        for e in executions
    )
    rows = rows or '<tr><td colspan="6">No executions yet.</td></tr>'
    return (
        '<table class="grid"><thead><tr><th>Execution</th><th>State</th><th>Attempts</th><th>Scheduled</th>'
        f"<th>Ended</th><th>Last error</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def job_fragment(job: pb.Job, executions: Sequence[pb.Execution]) -> str:
    upcoming = "".join(f"<li>{when(t)}</li>" for t in job.upcoming_run_times)
    facts = [
        ("State", job_state(job.state)),
        ("Queue", esc(job.queue)),
        ("Request", f'<span class="url">{esc(_method(job))} {esc(job.http_request.url)}</span>'),
        ("Schedule", _schedule(job)),
        ("Timeout", seconds(job.timeout)),
        ("Attempts at most", esc(job.retry_policy.max_attempts)),
        ("Created", when(job.create_time)),
    ]
    if job.kind == pb.JOB_KIND_RECURRING:
        facts += [("Runs", esc(job.run_count)), ("Next run", when(job.next_run_time))]
        if upcoming:
            facts.append(("Next runs", f'<ol class="upcoming">{upcoming}</ol>'))
    if job.schedule_error:
        facts.append(("Schedule error", f'<span class="error-text">{esc(job.schedule_error)}</span>'))
    if job.labels:
        facts.append(("Labels", esc(", ".join(f"{k}={v}" for k, v in sorted(job.labels.items())))))
    rows = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in facts)
    return f'<table class="facts">{rows}</table><h2>Executions</h2>{_executions_table(executions)}'


def job_page(job: pb.Job, executions: Sequence[pb.Execution]) -> str:
    body = (
        f'<div data-live="/events/jobs/{esc(job.id)}" data-fragment="/fragments/jobs/{esc(job.id)}">'
        f"{job_fragment(job, executions)}</div>"
    )
    return layout(f"Job {job.id}", body, active="/jobs")


# Executions.


def _timeline(execution: pb.Execution) -> str:
    """Each attempt as a bar on one time axis, from the first attempt's start to the last end."""
    attempts = [a for a in execution.attempts if _set(a.start_time)]
    if not attempts:
        return '<p class="hint">No attempt has started yet.</p>'
    start = min(a.start_time.ToDatetime(tzinfo=UTC) for a in attempts)
    now = datetime.now(UTC)
    ends = [a.end_time.ToDatetime(tzinfo=UTC) if _set(a.end_time) else now for a in attempts]
    span = max((max(ends) - start).total_seconds(), 0.001)
    bars = []
    for attempt, end in zip(attempts, ends, strict=True):
        begin = (attempt.start_time.ToDatetime(tzinfo=UTC) - start).total_seconds()
        width = max((end - attempt.start_time.ToDatetime(tzinfo=UTC)).total_seconds() / span * 100, 0.8)
        outcome = "running" if not _set(attempt.end_time) else ("ok" if not attempt.error_kind else "failed")
        label = f"#{attempt.number} " + (str(attempt.response_status_code) if attempt.response_status_code else "")
        bars.append(
            f'<div class="bar {outcome}" style="left:{begin / span * 100:.2f}%;width:{min(width, 100):.2f}%" '
            f'title="{esc(label)}"><span>{esc(label)}</span></div>'
        )
    return f'<div class="timeline" aria-label="Attempt timeline">{"".join(bars)}</div>'


def _excerpt(attempt: pb.Attempt) -> str:
    text = attempt.response_body[:_EXCERPT].decode("utf-8", errors="replace")
    more = "…" if attempt.response_body_truncated or len(attempt.response_body) > _EXCERPT else ""
    return esc(text + more)


def execution_fragment(execution: pb.Execution) -> str:
    facts = [
        ("State", execution_state(execution.state)),
        ("Job", _link("/jobs/" + execution.job_id, execution.job_id)),
        ("Scheduled", when(execution.schedule_time)),
        ("Started", when(execution.start_time)),
        ("Ended", when(execution.end_time)),
        ("Attempts", esc(execution.attempt_count)),
    ]
    if execution.replay_of:
        facts.append(("Replay of", _link("/executions/" + execution.replay_of, execution.replay_of)))
    if execution.last_error:
        facts.append(("Last error", f'<span class="error-text">{esc(execution.last_error)}</span>'))
    rows = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in facts)
    attempts = "".join(
        f"<tr><td>{a.number}{' (superseded)' if a.superseded else ''}</td><td>{when(a.start_time)}</td>"
        f"<td>{seconds(a.duration) if a.HasField('duration') else '…'}</td>"
        f'<td class="num">{a.response_status_code or _NONE}</td><td>{esc(error_kind(a.error_kind))}</td>'
        f'<td class="error-text">{esc(a.error_message)}</td><td>{esc(a.worker_id)}</td>'
        f'<td><code class="excerpt">{_excerpt(a)}</code></td></tr>'
        for a in execution.attempts
    )
    table = (
        '<table class="grid"><thead><tr><th>#</th><th>Started</th><th>Duration</th><th>Status</th>'
        "<th>Error kind</th><th>Error</th><th>Worker</th><th>Response</th></tr></thead>"
        f"<tbody>{attempts}</tbody></table>"
    )
    actions = ""
    if execution.state in (pb.EXECUTION_STATE_DEAD, pb.EXECUTION_STATE_CANCELLED):
        actions = _button(f"/executions/{execution.id}/replay", "Replay")
    elif execution.state not in (pb.EXECUTION_STATE_SUCCEEDED, pb.EXECUTION_STATE_SKIPPED):
        actions = _button(f"/executions/{execution.id}/cancel", "Cancel", danger=True)
    return (
        f'<table class="facts">{rows}</table><div class="actions">{actions}</div>'
        f"<h2>Attempts</h2>{_timeline(execution)}{table}"
    )


def execution_page(execution: pb.Execution, notice: str = "") -> str:
    body = (
        f'<div data-live="/events/jobs/{esc(execution.job_id)}" '
        f'data-fragment="/fragments/executions/{esc(execution.id)}">'
        f"{execution_fragment(execution)}</div>"
    )
    return layout(f"Execution {execution.id}", body, active="/jobs", notice=notice)


# Dead letters.

DEAD_LETTER_FILTERS = ("queue", "job", "error_kind")


def dead_letters_page(letters: Sequence[pb.Execution], filters: Mapping[str, str], notice: str = "") -> str:
    kinds = "".join(
        f'<option value="{k}"{" selected" if filters.get("error_kind") == k else ""}>{k or "any"}</option>'
        for k in ["", *(error_kind(n) for _, n in pb.ErrorKind.items() if n)]
    )
    form = f"""<form method="get" class="filters">
<label>Queue <input name="queue" value="{esc(filters.get("queue", ""))}"></label>
<label>Job <input name="job" value="{esc(filters.get("job", ""))}" size="38"></label>
<label>Error kind <select name="error_kind">{kinds}</select></label><button>Filter</button></form>"""
    rows = "".join(
        f'<tr><td><input type="checkbox" name="ids" value="{esc(e.id)}" form="replay-selected" '
        f'aria-label="select {esc(e.id)}"></td>'
        f"<td>{_link('/executions/' + e.id, e.id)}</td><td>{_link('/jobs/' + e.job_id, e.job_id)}</td>"
        f'<td class="num">{e.attempt_count}</td><td>{when(e.end_time)}</td>'
        f'<td class="error-text">{esc(e.last_error)}</td>'
        f"<td>{_button('/dead-letters/replay', 'Replay', {'ids': e.id, **_kept(filters)})}</td></tr>"
        for e in letters
    )
    query = urlencode({k: v for k, v in filters.items() if v})
    actions = f"""<div class="actions">
<form method="post" action="/dead-letters/replay" id="replay-selected" class="inline">
{"".join(f'<input type="hidden" name="{k}" value="{esc(v)}">' for k, v in _kept(filters).items())}
<button class="secondary">Replay selected</button></form>
<a class="button danger" href="/dead-letters/purge?{esc(query)}">Purge matching…</a></div>"""
    table = (
        '<table class="grid"><thead><tr><th></th><th>Execution</th><th>Job</th><th>Attempts</th><th>Ended</th>'
        f"<th>Last error</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
    )
    empty = '<p class="hint">No dead letters match.</p>' if not letters else ""
    return layout("Dead letters", form + actions + table + empty, active="/dead-letters", notice=notice)


def _kept(filters: Mapping[str, str]) -> dict[str, str]:
    """The filters to come back to after an action (as `back_*` fields)."""
    return {f"back_{k}": v for k, v in filters.items() if v}


def purge_confirmation_page(count: int, more: bool, filters: Mapping[str, str]) -> str:
    scope = ", ".join(f"{k} = {v}" for k, v in filters.items() if v) or "every queue"
    fields = "".join(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in filters.items() if v)
    many = f"{count}{'+' if more else ''}"
    back = urlencode({k: v for k, v in filters.items() if v})
    body = f"""<p>This deletes <strong>{many}</strong> dead letters ({esc(scope)}) with their attempts, for good.
{"At most 1,000 go per purge." if more else ""}</p>
<form method="post" action="/dead-letters/purge" class="confirm">{fields}
<input type="hidden" name="confirm" value="yes">
<button class="danger">Delete {many} dead letters</button> <a href="/dead-letters?{esc(back)}">Cancel</a>
</form>"""
    return layout("Purge dead letters?", body, active="/dead-letters")


# Workers.


def workers_fragment(workers: Sequence[qpb.Worker]) -> str:
    rows = []
    for w in workers:
        load = w.in_flight / w.capacity if w.capacity else 0.0
        rows.append(
            f"<tr><td>{esc(w.id)}</td><td>{esc(w.queue)}</td>"
            f'<td class="num">{w.in_flight}/{w.capacity}</td>'
            f'<td><div class="meter" title="{load:.0%}"><div style="width:{min(load, 1) * 100:.1f}%"></div></div></td>'
            f"<td>{ago(w.last_heartbeat_time)}</td><td>{when(w.start_time)}</td><td>{esc(w.version)}</td></tr>"
        )
    empty = '<tr><td colspan="7">No live workers.</td></tr>' if not rows else ""
    return (
        '<table class="grid"><thead><tr><th>Worker</th><th>Queue</th><th>In flight</th><th>Load</th>'
        f"<th>Heartbeat</th><th>Started</th><th>Version</th></tr></thead><tbody>{''.join(rows)}{empty}</tbody></table>"
    )


def workers_page(workers: Sequence[qpb.Worker]) -> str:
    body = f'<div data-live="/events/tick" data-fragment="/fragments/workers">{workers_fragment(workers)}</div>'
    return layout("Workers", body, active="/workers")
