"""The Lua scripts we run on arq's keys, side by side. Each is atomic (Redis runs a script
alone), registered once and then run by its SHA.

The keys they share, all arq's own except the paused flag:

* ``arq:job:<id>`` — the pickled job (``job_key_prefix``), with an expiry;
* ``arq:result:<id>`` — its kept result (``result_key_prefix``): arq refuses an id that has one;
* ``arq:retry:<id>`` — its try counter (``retry_key_prefix``);
* ``arq:in-progress:<id>`` — set while a worker runs it (``in_progress_key_prefix``); ours lasts
  WORKER_LEASE_TTL and the worker's heartbeat renews it;
* the queue sorted set (``jobs:queue:<name>``): job id scored by when it is due, in ms; a job
  stays in it while it runs and arq removes it when it finishes;
* ``jobs:paused:<name>`` — ours: while it exists the queue's workers claim nothing.
"""

from __future__ import annotations

__all__ = ["CLAIM_SCRIPT", "ENQUEUE_SCRIPT", "REDISPATCH_SCRIPT"]

# arq's enqueue_job in one round trip instead of three (WATCH, EXISTS, MULTI/EXEC): the same
# check (no job and no result under this id) and the same writes (job key with expiry, queue
# entry). KEYS: job, result, queue. ARGV: job key TTL (ms), payload, score, job id. Returns 1
# when it enqueued, 0 when arq already holds the id.
ENQUEUE_SCRIPT = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('PSETEX', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return 1
"""

# The reconciler's re-dispatch of an execution PostgreSQL says is unfinished. KEYS: job, result,
# retry, in-progress keys, queue. ARGV: job key TTL, payload, score, job id. Returns 1 when it
# enqueued the job again, 2 when it put a held job back in the queue, 0 when arq holds the job as
# it should. A job whose in-progress key exists is left alone: its worker renews that key with
# its heartbeat, so the key outlives the worker by one WORKER_LEASE_TTL at most.
REDISPATCH_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    if redis.call('EXISTS', KEYS[4]) == 0 and redis.call('ZADD', KEYS[5], 'NX', ARGV[3], ARGV[4]) == 1 then
        return 2
    end
    return 0
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('PSETEX', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[4])
return 1
"""

# A worker's poll: arq 0.28's start_jobs spends three round trips (WATCH, EXISTS, ZSCORE, then
# MULTI/EXEC) on *every* id in its read window, running ones included; with 400 calls open that
# burnt 65 % of a core and new jobs waited p50 343 ms instead of 9 ms. This does the same checks
# server-side: read the due window, skip ids whose in-progress key exists (running here or
# elsewhere), set the in-progress key of the ones it takes as arq does (for ARGV[4] ms), and
# return at most ``wanted`` of them with their scores. KEYS: queue, paused flag. ARGV: now (ms),
# read window, wanted, in-progress TTL (ms), the in-progress key prefix.
CLAIM_SCRIPT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return {} end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local wanted = tonumber(ARGV[3])
local claimed = {}
for i = 1, #due, 2 do
    if #claimed >= 2 * wanted then break end
    local in_progress = ARGV[5] .. due[i]
    if redis.call('EXISTS', in_progress) == 0 then
        redis.call('PSETEX', in_progress, ARGV[4], '1')
        claimed[#claimed + 1] = due[i]
        claimed[#claimed + 1] = due[i + 1]
    end
end
return claimed
"""
