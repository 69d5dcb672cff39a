"""``make chaos``: the fault-injection suite at full scale (``--scale short`` is CI's version).

Prints each scenario's figures as it ends and a summary table; saves everything as JSON in
chaos-results/. Exits 1 when any scenario failed a pass condition.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from chaos.scenarios import FULL, SCENARIOS, SHORT, Outcome, Scale

RESULTS_DIR = Path("chaos-results")
# What the summary table shows of each report (the JSON has everything).
COLUMNS = ("attempted", "acknowledged", "recovered", "delivered", "succeeded", "dead", "lost", "unexpected",
           "duplicated", "extra_deliveries", "not_terminal", "cut", "superseded_attempts")  # fmt: skip


def _print_outcome(outcome: Outcome, seconds: float) -> None:
    report = outcome.as_dict()
    verdict = "PASS" if outcome.passed else "FAIL"
    print(f"\n== {outcome.name}: {verdict} in {seconds:.0f}s", flush=True)
    print("   " + ", ".join(f"{k}={report[k]}" for k in COLUMNS))
    print("   figures: " + json.dumps(report["figures"]))
    for failure in outcome.failures:
        print(f"   FAILED: {failure}")


async def _run(scale: Scale, names: list[str], seed: int, workdir: Path) -> list[dict[str, object]]:
    results = []
    for name in names:
        started = time.monotonic()
        outcome = await SCENARIOS[name](scale, workdir, random.Random(seed))
        elapsed = time.monotonic() - started
        _print_outcome(outcome, elapsed)
        results.append({**outcome.as_dict(), "seconds": round(elapsed, 1)})
    return results


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--scale", choices=("full", "short"), default="full")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), default=[], help="repeatable")
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs and data")
    args = parser.parse_args()
    scale = FULL if args.scale == "full" else SHORT
    names = args.only or list(SCENARIOS)
    workdir = Path(tempfile.mkdtemp(prefix="jobs-chaos-"))
    workdir.chmod(0o755)  # PostgreSQL runs as its own user below it
    print(f"chaos: scale {scale.name}, seed {args.seed}, scenarios {', '.join(names)}; logs in {workdir}", flush=True)
    try:
        results = asyncio.run(_run(scale, names, args.seed, workdir))
    finally:
        if not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"chaos-{scale.name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps({"scale": scale.name, "seed": args.seed, "results": results}, indent=2, default=str))
    print(f"\nchaos: {sum(bool(r['passed']) for r in results)}/{len(results)} passed; results in {path}")
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
