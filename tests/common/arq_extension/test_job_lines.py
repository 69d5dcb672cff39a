"""arq's start and end line of each job are written only at DEBUG once the worker quiets them;
its other lines, and everybody else's, are untouched."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from jobs_common.arq_extension import quiet_arq_job_lines
from jobs_common.logs import configure_logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    arq_worker = logging.getLogger("arq.worker")
    handlers, level, filters = root.handlers[:], root.level, arq_worker.filters[:]
    yield
    root.handlers[:], arq_worker.filters[:] = handlers, filters
    root.setLevel(level)


def _arq_lines(level: str) -> list[str]:
    stream = io.StringIO()
    configure_logging(level, "json", stream)
    quiet_arq_job_lines()
    quiet_arq_job_lines()  # twice: one filter
    arq = logging.getLogger("arq.worker")
    arq.info("%6.2fs → %s(%s)%s", 0.01, "exec:e1:run_execution", "'e1'", "")
    arq.info("%6.2fs ← %s ● %s", 0.02, "exec:e1:run_execution", "")
    arq.info("%6.2fs ⊘ %s aborted", 0.03, "exec:e2:run_execution")
    arq.info("Starting worker for %d functions: %s", 1, "run_execution")
    return [json.loads(line)["event"] for line in stream.getvalue().splitlines()]


@pytest.mark.usefixtures("restored_logging")
def test_at_info_the_job_lines_go_and_the_rest_stays():
    assert _arq_lines("info") == [
        "  0.03s ⊘ exec:e2:run_execution aborted",
        "Starting worker for 1 functions: run_execution",
    ]
    assert len(logging.getLogger("arq.worker").filters) == 1


@pytest.mark.usefixtures("restored_logging")
def test_at_debug_every_line_is_written():
    assert _arq_lines("debug") == [
        "  0.01s → exec:e1:run_execution('e1')",
        "  0.02s ← exec:e1:run_execution ● ",
        "  0.03s ⊘ exec:e2:run_execution aborted",
        "Starting worker for 1 functions: run_execution",
    ]
