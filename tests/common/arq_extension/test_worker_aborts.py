"""A held job's abort, handed over by the claim, cancels its call, even when it comes while the
job's run_job has not yet started the call (arq registers the call's task in ``job_tasks`` only
after a few awaits)."""

from __future__ import annotations

import asyncio

from arq.worker import func

from jobs_common.arq_extension import ClaimingWorker


async def _noop(ctx: dict[str, object]) -> None:
    pass


async def test_an_abort_waits_for_the_call_its_run_job_is_about_to_start():
    worker = ClaimingWorker(
        functions=[func(_noop, name="noop")], queue="aborts", lease_ttl_ms=4000, handle_signals=False
    )
    starting = asyncio.get_running_loop().create_future()  # a run_job before its call starts
    call = asyncio.create_task(asyncio.sleep(60))
    try:
        worker.tasks["exec:starting"] = asyncio.ensure_future(starting)
        worker._cancel_aborted(["exec:starting", "exec:gone"])  # "gone" runs nowhere: dropped
        assert worker._pending_aborts == {"exec:starting"}
        assert worker.aborting_tasks == set()

        worker.job_tasks["exec:starting"] = call  # run_job started the call
        worker._cancel_aborted([])  # the next poll, with no new abort
        await asyncio.sleep(0)
        assert call.cancelled()
        assert worker.aborting_tasks == {"exec:starting"}  # run_job records it as aborted
        assert worker._pending_aborts == set()
    finally:
        starting.cancel()
        call.cancel()
