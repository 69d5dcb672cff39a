"""The statements behind queue figures, dead letters, the reconciler, the scheduler, the history
purge and the claim never read a history table (executions, attempts, jobs) whole: planned against
100,000 finished executions. ``make plans`` runs the same at 1,000,000 and prints the table
docs/benchmarks.md quotes."""

from __future__ import annotations

from bench.query_plans import run


async def test_no_statement_reads_a_history_table_sequentially():
    result = await run(executions=100_000, jobs=10_000, unfinished=2_000)
    statements = result["statements"]
    assert len({s["name"] for s in statements}) == 22, "every store call was recorded and explained"
    offenders = {s["name"]: s["scans"] for s in statements if s["history_seq_scans"]}
    assert not offenders, offenders
