"""The fault-injection suite at its short scale (``make chaos`` runs the full one): each scenario
runs real api and worker processes on a private PostgreSQL cluster and Redis server, injects
its fault, and must meet every pass condition of :mod:`chaos.scenarios`."""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import postgres_bin
from chaos.scenarios import SCENARIOS, SHORT

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None or postgres_bin() is None,
    reason="needs redis-server and the PostgreSQL server binaries (initdb, pg_ctl)",
)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """Like tmp_path, but traversable by the ``postgres`` user the private cluster runs as."""
    path = Path(tempfile.mkdtemp(prefix="jobs-chaos-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_scenario_meets_its_pass_conditions(name: str, workdir: Path) -> None:
    outcome = await SCENARIOS[name](SHORT, workdir, random.Random(20261127))
    print(outcome.as_dict())
    assert outcome.passed, f"{name}: {outcome.failures}\n{outcome.as_dict()}"
    # Each scenario did what it is about (a pass with nothing delivered proves nothing).
    assert outcome.report.delivered > 0
