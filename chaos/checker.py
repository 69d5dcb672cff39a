"""The checker, in the style of Jepsen's total-queue: what the client was told (CreateJob
answers), what the target received (deliveries), and what PostgreSQL holds at the end, compared.

* attempted — CreateJob calls made; acknowledged — answered OK; unanswered — any other answer.
* recovered — unanswered, yet committed (the api failed after its commit) and delivered.
* lost — acknowledged, never delivered, and not terminal in PostgreSQL.
* acknowledged_without_row — answered OK but not in PostgreSQL (invariant 2).
* unexpected — delivered but never committed by any CreateJob of this run.
* duplicated — jobs delivered more often than their outcome needed (1 for a 2xx, max_attempts
  for an always-failing target); extra_deliveries counts the surplus requests.
* same_attempt_delivered_twice — two requests with one (execution, attempt): fencing broken.
* delivery_without_attempt_row — a request whose (execution, attempt) PostgreSQL has no row of.
* not_terminal — committed executions still unfinished when the run ended.
* cut — requests the caller hung up on before the answer (a killed or cancelled call).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from chaos.load import RUN_LABEL, Load
from chaos.target import Delivery

__all__ = ["Report", "check", "count_unfinished", "percentiles", "recovery_times", "wait_settled"]

_TERMINAL = ("SUCCEEDED", "DEAD", "CANCELLED", "SKIPPED")

_EXECUTIONS = text(
    """
SELECT CAST(j.labels->>'n' AS integer) AS n, e.id, e.state, e.attempt_count, e.last_error
FROM jobs j JOIN executions e ON e.job_id = j.id
WHERE j.labels->>:label = :run
"""
)

_ATTEMPTS = text(
    """
SELECT a.execution_id, a.number, a.worker_id, extract(epoch FROM a.start_time) AS start,
       a.error_kind, a.error_message, a.superseded
FROM attempts a JOIN executions e ON e.id = a.execution_id JOIN jobs j ON j.id = e.job_id
WHERE j.labels->>:label = :run
ORDER BY a.execution_id, a.number
"""
)

_UNFINISHED = text(
    """
SELECT count(*) FROM executions e JOIN jobs j ON j.id = e.job_id
WHERE j.labels->>:label = :run AND e.state NOT IN ('SUCCEEDED', 'DEAD', 'CANCELLED', 'SKIPPED')
"""
)


@dataclass
class Report:
    attempted: int = 0
    acknowledged: int = 0
    unanswered: int = 0
    recovered: int = 0
    committed: int = 0
    delivered: int = 0
    deliveries: int = 0
    succeeded: int = 0
    dead: int = 0
    lost: int = 0
    acknowledged_without_row: int = 0
    unexpected: int = 0
    duplicated: int = 0
    extra_deliveries: int = 0
    same_attempt_delivered_twice: int = 0
    delivery_without_attempt_row: int = 0
    not_terminal: int = 0
    committed_never_delivered: int = 0
    short_of_attempts: int = 0
    cut: int = 0
    superseded_attempts: int = 0
    interrupted_attempts: int = 0
    figures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def count_unfinished(database_url: str, run: str) -> int:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(_UNFINISHED, {"label": RUN_LABEL, "run": run}) or 0)
    finally:
        await engine.dispose()


async def check(database_url: str, load: Load, deliveries: list[Delivery]) -> Report:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            params = {"label": RUN_LABEL, "run": load.run}
            executions = (await conn.execute(_EXECUTIONS, params)).all()
            attempts = (await conn.execute(_ATTEMPTS, params)).all()
    finally:
        await engine.dispose()

    report = Report(attempted=len(load.answers))
    acknowledged = {n for n, a in load.answers.items() if a.acknowledged}
    report.acknowledged = len(acknowledged)
    report.unanswered = report.attempted - report.acknowledged
    state_of = {row.n: row.state for row in executions}
    report.committed = len(state_of)
    report.succeeded = sum(1 for s in state_of.values() if s == "SUCCEEDED")
    report.dead = sum(1 for s in state_of.values() if s == "DEAD")
    if report.dead:
        report.figures["dead_reasons"] = dict(Counter(row.last_error for row in executions if row.state == "DEAD"))
    report.not_terminal = sum(1 for s in state_of.values() if s not in _TERMINAL)
    report.acknowledged_without_row = len(acknowledged - state_of.keys())

    by_n: dict[int, list[Delivery]] = defaultdict(list)
    for d in deliveries:
        by_n[d.n].append(d)
    report.deliveries = len(deliveries)
    report.delivered = len(by_n)
    report.recovered = sum(1 for n in by_n if n in load.answers and n not in acknowledged and n in state_of)
    report.unexpected = sum(1 for n in by_n if n not in state_of)
    report.lost = sum(1 for n in acknowledged if n not in by_n and state_of.get(n) not in _TERMINAL)
    report.committed_never_delivered = sum(1 for n in state_of if n not in by_n)
    report.cut = sum(1 for d in deliveries if d.cut)
    for n in state_of:
        got = len(by_n.get(n, ()))
        plan = load.plans.get(n)
        needed = plan.max_attempts if plan is not None and plan.status >= 500 else 1
        if got > needed:
            report.duplicated += 1
            report.extra_deliveries += got - needed
        elif got < needed:
            report.short_of_attempts += 1

    pairs = Counter((d.execution_id, d.attempt) for d in deliveries)
    report.same_attempt_delivered_twice = sum(1 for count in pairs.values() if count > 1)
    rows = {(str(a.execution_id), a.number) for a in attempts}
    report.delivery_without_attempt_row = sum(1 for pair in pairs if pair not in rows)
    report.superseded_attempts = sum(1 for a in attempts if a.superseded)
    report.interrupted_attempts = sum(1 for a in attempts if a.error_kind == "INTERRUPTED")
    return report


async def recovery_times(database_url: str, run: str, kills: list[tuple[float, int]]) -> list[float]:
    """For each execution a SIGKILL interrupted: seconds from the kill to the next attempt's start.
    ``kills`` holds (time, pid) of each SIGKILLed worker; worker ids are ``host:pid``."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            attempts = (await conn.execute(_ATTEMPTS, {"label": RUN_LABEL, "run": run})).all()
    finally:
        await engine.dispose()
    killed_at = {pid: at for at, pid in kills}
    by_execution: dict[Any, list[Any]] = defaultdict(list)
    for a in attempts:
        by_execution[a.execution_id].append(a)
    times: list[float] = []
    for rows in by_execution.values():
        for lost, following in itertools.pairwise(rows):
            pid = int(lost.worker_id.rsplit(":", 1)[1])
            if pid in killed_at and lost.error_message == "worker lost: lease expired":
                times.append(float(following.start) - killed_at[pid])
    return times


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    cut = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else ordered * 99
    return {
        "count": len(ordered),
        "p50": round(statistics.median(ordered), 2),
        "p99": round(cut[98], 2),
        "max": round(ordered[-1], 2),
    }


async def wait_settled(database_url: str, run: str, timeout: float) -> float:
    """Seconds until every committed execution of ``run`` is terminal, or ``timeout`` (the report
    then counts what is still unfinished)."""
    started = time.monotonic()
    while await count_unfinished(database_url, run) and time.monotonic() - started < timeout:
        await asyncio.sleep(0.5)
    return round(time.monotonic() - started, 1)
