"""The dispatcher's one-round-trip enqueue writes exactly what arq's enqueue_job writes."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from arq.constants import expires_extra_ms, job_key_prefix, result_key_prefix
from arq.jobs import Job, JobStatus, deserialize_job_raw

from jobs_common.arq_extension import RUN_EXECUTION, Dispatcher, arq_job_id, arq_queue_name


async def test_dispatch_enqueues_once_in_arqs_own_format(arq_redis):
    execution_id = uuid.uuid4()
    queue = f"q-{execution_id.hex[:8]}"
    dispatcher = Dispatcher(arq_redis)
    before_ms = int(time.time() * 1000)

    assert await dispatcher.dispatch_many([(execution_id, queue)]) == 1
    assert await dispatcher.dispatch_many([(execution_id, queue)]) == 0

    job_id = arq_job_id(execution_id)
    function, args, kwargs, job_try, enqueue_ms = deserialize_job_raw(await arq_redis.get(job_key_prefix + job_id))
    assert (function, args, kwargs) == (RUN_EXECUTION, (str(execution_id),), {})
    assert not job_try  # like enqueue_job without _job_try
    assert before_ms <= enqueue_ms <= time.time() * 1000
    assert before_ms <= await arq_redis.zscore(arq_queue_name(queue), job_id) <= time.time() * 1000
    assert 0 < await arq_redis.pttl(job_key_prefix + job_id) <= expires_extra_ms
    assert await Job(job_id, arq_redis, _queue_name=arq_queue_name(queue)).status() == JobStatus.queued


async def test_deferred_dispatch_scores_at_run_at_and_outlives_it(arq_redis):
    execution_id = uuid.uuid4()
    queue = f"q-{execution_id.hex[:8]}"
    run_at = datetime.now(UTC) + timedelta(hours=2)
    await Dispatcher(arq_redis).dispatch_at([(execution_id, queue, run_at)])
    job_id = arq_job_id(execution_id)
    assert await arq_redis.zscore(arq_queue_name(queue), job_id) == int(run_at.timestamp() * 1000)
    assert await arq_redis.pttl(job_key_prefix + job_id) > 2 * 3600 * 1000 + expires_extra_ms - 60_000


async def test_a_kept_result_blocks_a_second_dispatch_like_arq(arq_redis):
    execution_id = uuid.uuid4()
    await arq_redis.set(result_key_prefix + arq_job_id(execution_id), b"done", px=60_000)
    assert await Dispatcher(arq_redis).dispatch_many([(execution_id, "default")]) == 0
    assert await arq_redis.exists(job_key_prefix + arq_job_id(execution_id)) == 0
