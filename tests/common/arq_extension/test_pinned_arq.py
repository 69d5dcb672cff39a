"""The arq internals jobs_common.arq_extension relies on, pinned: if an arq upgrade moves one of
these, this fails first, naming it, instead of the claim path misbehaving in production."""

from __future__ import annotations

import asyncio
import inspect
from importlib.metadata import version

import arq.constants
import arq.worker
from arq import Worker
from arq.jobs import deserialize_job_raw, serialize_job
from arq.worker import func

from jobs_common.arq_extension import RUN_EXECUTION
from jobs_common.arq_extension._job_lines import ARQ_JOB_LINE_FORMATS


def test_arq_is_the_pinned_release():
    assert version("arq") == "0.28.0"


def test_the_keys_our_scripts_write_are_arqs():
    assert arq.constants.job_key_prefix == "arq:job:"
    assert arq.constants.in_progress_key_prefix == "arq:in-progress:"
    assert arq.constants.result_key_prefix == "arq:result:"
    assert arq.constants.retry_key_prefix == "arq:retry:"
    assert arq.constants.abort_jobs_ss == "arq:abort"
    assert arq.constants.expires_extra_ms == 86_400_000


def test_the_payload_our_enqueue_writes_is_what_arq_reads():
    payload = serialize_job(RUN_EXECUTION, ("an-execution-id",), {}, None, 1_700_000_000_000)
    function, args, kwargs, job_try, enqueue_ms = deserialize_job_raw(payload)
    assert (function, args, kwargs, enqueue_ms) == (RUN_EXECUTION, ("an-execution-id",), {}, 1_700_000_000_000)
    assert job_try is None


def test_the_worker_methods_we_override_or_call_keep_their_shape():
    # name: (parameters, a coroutine function?)
    expected = {
        "_poll_iteration": (["self"], True),
        "run_job": (["self", "job_id", "score"], True),
        "heart_beat": (["self"], True),
        "record_health": (["self"], True),
        "_release_sem_dec_counter_on_complete": (["self"], False),
        "handle_sig_wait_for_completion": (["self", "signum"], False),
        "_jobs_started": (["self"], False),
        "close": (["self"], True),
        "main": (["self"], True),
    }
    for name, (parameters, coroutine) in expected.items():
        method = getattr(Worker, name)
        assert list(inspect.signature(method).parameters) == parameters, name
        assert inspect.iscoroutinefunction(method) is coroutine, name
    # run_job reads the pool through this property (its first use: the transaction our claim
    # answers for it, ClaimingWorker.pool).
    assert isinstance(inspect.getattr_static(Worker, "pool"), property)


async def _noop(ctx: dict[str, object]) -> None:
    pass


def test_the_worker_state_our_claim_path_reads_and_writes():
    worker = Worker(
        functions=[func(_noop, name="noop")], burst=True, handle_signals=False, max_jobs=3, queue_read_limit=7
    )
    assert isinstance(worker.sem, asyncio.BoundedSemaphore)
    assert worker.job_counter == 0
    assert worker.tasks == {}
    # run_job registers the call's own task here; a call cancelled while its id is in
    # aborting_tasks is recorded as aborted (our claim feeds the aborts instead of arq's read).
    assert worker.job_tasks == {}
    assert worker.aborting_tasks == set()
    assert worker.queue_read_limit == 7
    assert worker.poll_delay_s == 0.5  # the poll's period: a poll later than that is lag
    assert worker.max_jobs == 3
    assert (worker.allow_pick_jobs, worker.allow_abort_jobs) == (True, False)
    assert worker._pool is None  # set by main(); our heartbeat waits for it
    assert worker._handle_signals is False


def test_the_job_lines_kept_for_debug_are_arqs():
    # quiet_arq_job_lines recognises arq's start and end line of a job by their formats.
    source = inspect.getsource(arq.worker.Worker.run_job)
    for line_format in ARQ_JOB_LINE_FORMATS:
        assert f"logger.info('{line_format}'" in source, line_format
