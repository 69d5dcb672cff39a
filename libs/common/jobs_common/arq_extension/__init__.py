"""Everything job-scheduler builds on arq, in one room: the keys, the Lua scripts, the Worker
subclass. arq is pinned (0.28.0; maintenance-only since October 2025), and what we rely on of its
internals is pinned by ``tests/common/arq_extension/test_pinned_arq.py``, read beside this.

The contract with arq:

* One function, :data:`RUN_EXECUTION`, runs an execution: ``run_execution(ctx, execution_id)``.
  The arq job id is derived from the execution id (:func:`arq_job_id`), so enqueueing twice is a
  no-op: the api, a retried CreateJob and the scheduler dispatch freely, and the reconciler
  re-dispatches under the same id.
* A job's ``queue`` is arq's queue sorted set :func:`arq_queue_name`; :func:`paused_key` exists
  while the queue is paused. A job with a flow key (Job.flow_control) waits in its key's own
  ready set instead (``_keys.flow_prefix``), and the claim takes the keys in turns.
* :class:`Dispatcher` writes exactly what arq's ``enqueue_job`` writes (job key with expiry,
  queue entry) in one script; the reconciler's re-dispatch and the aborts use arq's own keys.
* :class:`ClaimingWorker` is arq's ``Worker`` with our claim path (:class:`DueJobClaimer`, one
  round trip per poll) instead of arq's private ``_poll_iteration``, in-progress keys held for a
  lease renewed by a heartbeat instead of the longest job timeout, a poll loop that outlives
  Redis outages, and an idle wait on doorbells (``_keys.MAX_IDLE_WAIT_MS``) instead of a poll
  every ``poll_delay``.

The scripts, side by side, are in :mod:`._scripts`.
"""

from jobs_common.arq_extension._claimer import DueJobClaimer
from jobs_common.arq_extension._connection import (
    JobsRedisSettings,
    connect,
    create_redis_pool,
    redis_settings,
    warn_if_redis_can_evict,
)
from jobs_common.arq_extension._dispatch import Dispatch, Flow, dispatch_of
from jobs_common.arq_extension._dispatcher import Dispatcher
from jobs_common.arq_extension._job_lines import quiet_arq_job_lines
from jobs_common.arq_extension._keys import ARQ_MAX_TRIES, RUN_EXECUTION, arq_job_id, arq_queue_name, paused_key
from jobs_common.arq_extension._limits_state import FlowKeyState, HeldBack, LimitsState
from jobs_common.arq_extension._worker import ClaimingWorker

__all__ = [
    "ARQ_MAX_TRIES",
    "RUN_EXECUTION",
    "ClaimingWorker",
    "Dispatch",
    "Dispatcher",
    "DueJobClaimer",
    "Flow",
    "FlowKeyState",
    "HeldBack",
    "JobsRedisSettings",
    "LimitsState",
    "arq_job_id",
    "arq_queue_name",
    "connect",
    "create_redis_pool",
    "dispatch_of",
    "paused_key",
    "quiet_arq_job_lines",
    "redis_settings",
    "warn_if_redis_can_evict",
]
