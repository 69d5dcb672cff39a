"""The Lua scripts we run on arq's keys, side by side. Each is atomic (Redis runs a script
alone), registered once and then run by its SHA.

The keys they share, all arq's own except the paused flag:

* ``arq:job:<id>`` — the pickled job (``job_key_prefix``), with an expiry;
* ``arq:result:<id>`` — its kept result (``result_key_prefix``): arq refuses an id that has one;
* ``arq:retry:<id>`` — its try counter (``retry_key_prefix``);
* ``arq:in-progress:<id>`` — set while a worker runs it (``in_progress_key_prefix``); ours holds
  the worker's name and lasts arq's job timeout, as a backstop: a worker's lease, not this key,
  says whether it still runs;
* the queue sorted set (``jobs:queue:<name>``): the *ready* jobs, id scored by when it is due,
  in ms. A claimed job leaves it (unlike bare arq, where running jobs stay and every poll reads
  them again), so a poll reads only what it may start, whatever runs;
* ``jobs:leases:<name>`` — ours: the queue's workers, scored by when their lease lapses;
* ``jobs:held:<worker>`` — ours: what a worker runs, id → the score it was claimed at. When its
  lease lapses, the next claim on the queue puts all of it back in the queue at once;
* ``jobs:paused:<name>`` — ours: while it exists the queue's workers claim nothing;
* ``jobs:limits:<name>`` and ``jobs:tokens:<name>`` — ours: the queue's rate limits while it has
  any, and its token bucket;
* ``arq:abort`` — arq's sorted set of jobs asked to abort (``abort_jobs_ss``): arq's run_job
  aborts a job found there before it starts; bare arq workers read all of it at every poll;
* ``jobs:aborts:<worker>`` — ours: the jobs a worker holds that were asked to abort, read and
  emptied by its next claim;
* ``jobs:bell:queue:<name>`` and ``jobs:bell:worker:<worker>`` — ours: the doorbells an idle
  worker waits on (``_keys.MAX_IDLE_WAIT_MS`` says what rings them).
"""

from __future__ import annotations

from jobs_common.arq_extension._keys import FLOW_BLOCKED, PRIORITY_BAND_MS

__all__ = [
    "ABORT_SCRIPT",
    "CLAIM_SCRIPT",
    "ENQUEUE_ARGS",
    "ENQUEUE_KEYS",
    "ENQUEUE_SCRIPT",
    "FLOW_FINISH_SCRIPT",
    "HAND_BACK_SCRIPT",
    "LIMITS_STATE_SCRIPT",
    "REDISPATCH_SCRIPT",
    "RENEW_LEASE_SCRIPT",
    "RESUME_SCRIPT",
    "UNQUEUE_SCRIPT",
]


# The Lua functions the scripts share, put before those that use them: a ready set's priority
# bands, the queue's open calls, and flow keys (Job.flow_control, ``_keys.flow_prefix`` names
# their keys). ``flow`` is the queue's flow prefix. Scores pass to Redis
# as formatted strings: Lua's own conversion keeps 14 digits.
SHARED_FUNCTIONS = f"""
local FLOW_BAND = {PRIORITY_BAND_MS}
local FLOW_BLOCKED = {FLOW_BLOCKED}
-- The highest priority band in use in a ready set (the lowest score says which).
local function highest_band(ready)
    local lowest = redis.call('ZRANGE', ready, 0, 0, 'WITHSCORES')
    if #lowest > 0 and tonumber(lowest[2]) < 0 then return -math.floor(tonumber(lowest[2]) / FLOW_BAND) end
    return 0
end
-- The calls the queue's live workers hold (a lapsed worker's stop counting).
local function open_calls(leases, held_prefix, server_ms)
    local open = 0
    for _, holder in ipairs(redis.call('ZRANGEBYSCORE', leases, '(' .. server_ms, '+inf')) do
        open = open + redis.call('HLEN', held_prefix .. holder)
    end
    return open
end
local function flow_due(score)
    local priority = -math.floor(tonumber(score) / FLOW_BAND)
    return tonumber(score) + priority * FLOW_BAND
end
-- A held hash value: the score the job was claimed at (as a string), and its key (nil: none).
local function flow_held(value)
    local score, key = string.match(value, '^([^|]*)|(.*)$')
    if score then return score, key end
    return value, nil
end
-- A keyed job into its key's ready set (unless there: then 0), and the key looked at no later
-- than the job is due, unless it waits for a slot (the next end of one of its calls looks).
local function flow_ready(flow, key, id, score)
    local added = redis.call('ZADD', flow .. 'ready:' .. key, 'NX', score, id)
    if added == 1 then
        local look = redis.call('ZSCORE', flow .. 'keys', key)
        if not look or tonumber(look) < FLOW_BLOCKED then
            redis.call('ZADD', flow .. 'keys', 'LT', string.format('%.0f', flow_due(score)), key)
        end
    end
    return added
end
-- The key's limits, unless a later job's are set. Returns whether they changed.
local function flow_set_limits(flow, key, concurrent, rate, since)
    local set = redis.call('HGET', flow .. 'limits', key)
    if set and tonumber(string.match(set, '(%S+)$')) > tonumber(since) then return false end
    local limits = concurrent .. ' ' .. rate .. ' ' .. since
    redis.call('HSET', flow .. 'limits', key, limits)
    return set == false or string.match(set, '^%S+ %S+') ~= concurrent .. ' ' .. rate
end
-- The key's max concurrent calls and dispatches a second (0: none).
local function flow_limits(flow, key)
    local set = redis.call('HGET', flow .. 'limits', key)
    if not set then return 0, 0 end
    local concurrent, rate = string.match(set, '^(%S+) (%S+)')
    return tonumber(concurrent), tonumber(rate)
end
-- When the claim looks at the key next: its earliest due ready job (any priority), no sooner
-- than ``not_before``. A key without ready jobs leaves the keys set, and forgets its limits
-- once none of its calls is open either. Returns whether the key has ready jobs.
local function flow_rescore(flow, key, not_before)
    local ready = flow .. 'ready:' .. key
    local first = redis.call('ZRANGE', ready, 0, 0, 'WITHSCORES')
    if #first == 0 then
        redis.call('ZREM', flow .. 'keys', key)
        if redis.call('EXISTS', flow .. 'open:' .. key) == 0 then redis.call('HDEL', flow .. 'limits', key) end
        return false
    end
    local earliest = nil
    for priority = -math.floor(tonumber(first[2]) / FLOW_BAND), 0, -1 do
        local base = -priority * FLOW_BAND
        local head = redis.call('ZRANGEBYSCORE', ready, string.format('%.0f', base),
            string.format('%.0f', base + FLOW_BAND - 1), 'WITHSCORES', 'LIMIT', 0, 1)
        if #head > 0 and (earliest == nil or tonumber(head[2]) - base < earliest) then
            earliest = tonumber(head[2]) - base
        end
    end
    redis.call('ZADD', flow .. 'keys', string.format('%.3f', math.max(earliest, not_before)), key)
    return true
end
-- A keyed job's call ended or went back (a finish, a hand-back, a lapse): its slot frees if
-- ``holder`` held it, and a key that waited for a slot is looked at again. Returns whether a
-- key with ready jobs was (a waiting worker should look).
local function flow_release(flow, key, id, holder)
    local open = flow .. 'open:' .. key
    if redis.call('HGET', open, id) == holder then redis.call('HDEL', open, id) end
    local score = redis.call('ZSCORE', flow .. 'keys', key)
    if score and tonumber(score) < FLOW_BLOCKED then return false end
    return flow_rescore(flow, key, 0)
end
-- The key's whole tokens now, refilled at ``rate`` on Redis's clock up to its bucket's size (a
-- second's tokens, at least 1; a new bucket starts full), and that size.
local function flow_tokens(flow, key, rate, server_ms)
    local burst = math.max(1, math.ceil(rate))
    local bucket = redis.call('HMGET', flow .. 'tokens:' .. key, 'tokens', 'at')
    local at = tonumber(bucket[2]) or server_ms
    return math.min(burst, (tonumber(bucket[1]) or burst) + math.max(0, server_ms - at) * rate / 1000), burst
end
local function flow_keep_tokens(flow, key, tokens, rate, burst, server_ms)
    redis.call('HSET', flow .. 'tokens:' .. key, 'tokens', tostring(tokens), 'at', server_ms)
    redis.call('PEXPIRE', flow .. 'tokens:' .. key, math.ceil(burst / rate * 1000) + 60000)
end
"""

# arq's enqueue_job for many executions in one round trip (arq spends three on each: WATCH,
# EXISTS, MULTI/EXEC): per execution the same check (no job and no result under its id) and the
# same writes (job key with expiry, queue entry), and a ring of its queue's bell when it is due
# by its ring-by score (now plus the longest an idle worker waits; each ring wakes one worker).
# ARGV[1]: the bells' length; then per execution, KEYS: job, result, queue, queue bell
# (ENQUEUE_KEYS), and ARGV: job key TTL (ms), payload, score, job id, ring-by score, then for a
# job with a flow key the queue's flow prefix, the key, its max concurrent calls, its dispatches
# a second and since when (ms) they are set (the job then waits in its key's ready set), or five
# empty strings (ENQUEUE_ARGS). Returns one 1 (enqueued) or 0 (arq already holds the id) per
# execution.
ENQUEUE_KEYS = 4
ENQUEUE_ARGS = 10
ENQUEUE_SCRIPT = (
    SHARED_FUNCTIONS
    + f"""
local added, rings, length = {{}}, {{}}, tonumber(ARGV[1])
for i = 0, #KEYS / {ENQUEUE_KEYS} - 1 do
    local k, a = i * {ENQUEUE_KEYS}, 1 + i * {ENQUEUE_ARGS}
    if redis.call('EXISTS', KEYS[k + 1], KEYS[k + 2]) > 0 then
        added[i + 1] = 0
    else
        added[i + 1] = 1
        redis.call('PSETEX', KEYS[k + 1], ARGV[a + 1], ARGV[a + 2])
        local flow, key = ARGV[a + 6], ARGV[a + 7]
        if flow ~= '' then
            local changed = flow_set_limits(flow, key, ARGV[a + 8], ARGV[a + 9], ARGV[a + 10])
            flow_ready(flow, key, ARGV[a + 4], ARGV[a + 3])
            local look = redis.call('ZSCORE', flow .. 'keys', key)
            if changed and look and tonumber(look) >= FLOW_BLOCKED then flow_rescore(flow, key, 0) end
        else
            redis.call('ZADD', KEYS[k + 3], ARGV[a + 3], ARGV[a + 4])
        end
        if tonumber(ARGV[a + 3]) <= tonumber(ARGV[a + 5]) then
            local bell = KEYS[k + 4]
            if not rings[bell] then rings[bell] = {{}} end
            if #rings[bell] < length then table.insert(rings[bell], '1') end
        end
    end
end
for bell, ring in pairs(rings) do
    redis.call('LPUSH', bell, unpack(ring))
    redis.call('LTRIM', bell, 0, length - 1)
end
return added
"""
)

# The reconciler's re-dispatch of an execution PostgreSQL says is unfinished. KEYS: job, result,
# retry, in-progress keys, queue, queue bell. ARGV: job key TTL, payload, score, job id, ring-by
# score, bell length, and a flow key's five (as ENQUEUE_SCRIPT's; none without a key). Returns 1
# when it enqueued the job again, 2 when it put a held job back in the queue, 0 when arq holds the
# job as it should. A job whose in-progress key exists is left alone: a worker holds it, and if
# that worker's lease lapses the next claim on the queue puts it back (CLAIM_SCRIPT).
REDISPATCH_SCRIPT = (
    SHARED_FUNCTIONS
    + """
local function ready(score, id)
    if ARGV[7] then return flow_ready(ARGV[7], ARGV[8], id, score) end
    return redis.call('ZADD', KEYS[5], 'NX', score, id)
end
local answer = 1
if redis.call('EXISTS', KEYS[1]) == 1 then
    if redis.call('EXISTS', KEYS[4]) == 1 or ready(ARGV[3], ARGV[4]) == 0 then
        return 0
    end
    answer = 2
else
    redis.call('DEL', KEYS[2], KEYS[3])
    redis.call('PSETEX', KEYS[1], ARGV[1], ARGV[2])
    ready(ARGV[3], ARGV[4])
end
if ARGV[7] then flow_set_limits(ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]) end
if tonumber(ARGV[3]) <= tonumber(ARGV[5]) then
    redis.call('LPUSH', KEYS[6], '1')
    redis.call('LTRIM', KEYS[6], 0, tonumber(ARGV[6]) - 1)
end
return answer
"""
)

# A worker's poll. arq 0.28's start_jobs spends three round trips (WATCH, EXISTS, ZSCORE, then
# MULTI/EXEC) on *every* id in its read window, and running jobs stay in that window, so each
# poll re-checked every call in flight. This claim first puts back the calls of one worker
# whose lease lapsed (all of them, at the score they were claimed at), renews the claiming
# worker's own lease, then reads at most ARGV[2] due ready jobs and takes at most ARGV[3]:
# each leaves the queue, gets its in-progress key (holding the worker's name, for ARGV[4] ms as
# a backstop) and an entry in the worker's held hash. An id whose in-progress key exists is
# left where it is (a worker of an earlier version still runs it).
# Leases are kept on Redis's clock (TIME), so workers' clocks need not agree; due times are
# arq's scores, on the workers' clocks.
# The same round trip reads and empties the worker's abort set (ABORT_SCRIPT fills it), so a
# poll spends nothing more on aborts, however many are pending elsewhere; a lapsed worker's
# abort set goes with its calls (arq's abort set still holds them, and aborts them at their next
# start).
# Last, it says how long the worker may wait before anything becomes claimable that nothing
# rings for: until the next job is due, or until the lease of another worker lapses (the claim
# then puts its calls back); -1 when neither is known. Calls it put back ring the queue's bell,
# for the workers waiting on it.
# Under the queue's rate limits (its limits hash, when it has one), it takes fewer: no more
# than max_concurrent_dispatches minus the calls the queue's live workers hold (their held
# hashes: a lapsed worker's calls stop counting when its lease lapses, and come back to the
# queue), and no more than the whole tokens in the queue's bucket, refilled at the rate on
# Redis's clock up to the burst (a new bucket starts full). With the bucket short of a token,
# the wait is at most until the next one. A queue without limits costs one HMGET of a missing
# key.
# Priorities: the ready set holds each in a band of scores below the last (``_keys.priority_
# score``); the claim reads the bands from the highest in use (the lowest score says which) down
# to 0, each up to now and at most the read window, so due jobs of a higher priority are taken
# first and, within one, by due time. A queue with no job above priority 0 reads one band, as
# before, and one ZRANGE more.
# Flow keys (Job.flow_control): once the queue has any, the claim takes jobs by lanes, one
# for the jobs without a key and one for each key due to be looked at (``_keys.flow_prefix``),
# and takes from each no more than the room its key's limits leave: the next job taken is the
# next of the lane whose next job has the highest priority, and among equals of the lane served
# longest ago, so a key with 10,000 jobs waiting takes turns with a key with one. A key with no
# room is not read again until its next token (rate), or until one of its calls ends (its
# calls all open: ``FLOW_BLOCKED``); a keyed job held by a worker carries its key in the held
# hash (``<score>|<key>``), so a lapse or a hand-back puts it back in its key's ready set and
# frees its slot. A queue without flow keys pays one EXISTS.
# Each job taken also gets what arq's run_job would begin with, a transaction of its own per
# job: its payload (GET), its try (INCR of its retry key, which then expires in 88,400 s) and
# whether it was asked to abort before it started (ZREM from arq's abort set).
# KEYS: queue, paused flag, the queue's worker leases, this worker's held hash, its abort set,
# the queue's bell, its limits, its token bucket, arq's abort set.
# ARGV: now (ms), read window, wanted, in-progress TTL (ms), in-progress key prefix, this
# worker's name, its lease TTL (ms), held-hash key prefix, abort-set key prefix, bell length,
# the priority band (ms), the queue's flow prefix, arq's job key prefix, its retry key prefix.
# Returns {{id, held, id, held...} (held: the score in its band, and '|<flow key>' for a keyed
# job), {ids to abort...}, ms to wait at most (or -1), 1 when the queue or one of its keys limits
# concurrent calls (the worker then rings the bell as its calls end), {payload ('' when the job
# key is gone), try, 1 when it was to abort, ... per job taken, in order}}.
CLAIM_SCRIPT = (
    SHARED_FUNCTIONS
    + """
redis.replicate_commands()
local now = tonumber(ARGV[1])
local flow = ARGV[12]
local time = redis.call('TIME')
local server_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', server_ms, 'LIMIT', 0, 2)
for _, holder in ipairs(lapsed) do
    if holder ~= ARGV[6] then
        local held_key = ARGV[8] .. holder
        local held = redis.call('HGETALL', held_key)
        for i = 1, #held, 2 do
            local in_progress = ARGV[5] .. held[i]
            if redis.call('GET', in_progress) == holder then redis.call('DEL', in_progress) end
            local score, key = flow_held(held[i + 1])
            if key then
                flow_ready(flow, key, held[i], score)
                flow_release(flow, key, held[i], holder)
            else
                redis.call('ZADD', KEYS[1], 'NX', score, held[i])
            end
        end
        if #held > 0 then
            redis.call('LPUSH', KEYS[6], '1')
            redis.call('LTRIM', KEYS[6], 0, tonumber(ARGV[10]) - 1)
        end
        redis.call('DEL', held_key, ARGV[9] .. holder)
        redis.call('ZREM', KEYS[3], holder)
    end
end
redis.call('ZADD', KEYS[3], server_ms + tonumber(ARGV[7]), ARGV[6])
local aborts = redis.call('SMEMBERS', KEYS[5])
if #aborts > 0 then redis.call('DEL', KEYS[5]) end
local wait = -1
local first = redis.call('ZRANGE', KEYS[3], 0, 1, 'WITHSCORES')
for i = 1, #first, 2 do
    if first[i] ~= ARGV[6] then
        wait = math.max(0, tonumber(first[i + 1]) - server_ms)
        break
    end
end
local wanted = tonumber(ARGV[3])
if wanted <= 0 or redis.call('EXISTS', KEYS[2]) == 1 then return {{}, aborts, wait, 0, {}} end
local limits = redis.call('HMGET', KEYS[7], 'rate', 'burst', 'concurrent')
local rate = tonumber(limits[1]) or 0
local concurrent = tonumber(limits[3]) or 0
local limited = 0
if concurrent > 0 then
    limited = 1
    wanted = math.min(wanted, concurrent - open_calls(KEYS[3], ARGV[8], server_ms))
end
local tokens = 0
local burst = 0
if rate > 0 then
    burst = tonumber(limits[2]) or 1
    local bucket = redis.call('HMGET', KEYS[8], 'tokens', 'at')
    local at = tonumber(bucket[2]) or server_ms
    tokens = math.min(burst, (tonumber(bucket[1]) or burst) + math.max(0, server_ms - at) * rate / 1000)
    wanted = math.min(wanted, math.floor(tokens))
end
local function take_tokens(taken)
    if rate <= 0 then return end
    tokens = tokens - taken
    redis.call('HSET', KEYS[8], 'tokens', tostring(tokens), 'at', server_ms)
    redis.call('PEXPIRE', KEYS[8], math.ceil(burst / rate * 1000) + 60000)
    if tokens < 1 then
        local next_token = math.ceil((1 - tokens) / rate * 1000)
        if wait < 0 or next_token < wait then wait = next_token end
    end
end
if wanted <= 0 then
    take_tokens(0)
    return {{}, aborts, wait, limited, {}}
end
local band = tonumber(ARGV[11])
-- Up to ``limit`` due jobs {id, score} of a ready set: the highest priority first, by due time
-- within one.
local function due_jobs(ready, limit)
    local jobs = {}
    for priority = highest_band(ready), 0, -1 do
        if #jobs >= limit then break end
        local base = -priority * band
        local due = redis.call('ZRANGEBYSCORE', ready, string.format('%.0f', base), string.format('%.0f', base + now),
            'WITHSCORES', 'LIMIT', 0, limit - #jobs)
        for i = 1, #due, 2 do jobs[#jobs + 1] = {due[i], due[i + 1]} end
    end
    return jobs
end
local claimed, started = {}, {}
-- Starts a job unless a worker of an earlier version still runs it; ``held`` is what the held
-- hash keeps of it (its score, and its flow key).
local function take(ready, id, held)
    local in_progress = ARGV[5] .. id
    if redis.call('EXISTS', in_progress) == 1 then return false end
    redis.call('ZREM', ready, id)
    redis.call('PSETEX', in_progress, ARGV[4], ARGV[6])
    redis.call('HSET', KEYS[4], id, held)
    claimed[#claimed + 1] = id
    claimed[#claimed + 1] = held
    started[#started + 1] = redis.call('GET', ARGV[13] .. id) or ''
    started[#started + 1] = redis.call('INCR', ARGV[14] .. id)
    redis.call('EXPIRE', ARGV[14] .. id, 88400)
    started[#started + 1] = redis.call('ZREM', KEYS[9], id)
    return true
end
local unkeyed = due_jobs(KEYS[1], tonumber(ARGV[2]))
local flowing = redis.call('EXISTS', flow .. 'keys') == 1
if not flowing then
    for _, job in ipairs(unkeyed) do
        if #claimed >= 2 * wanted then break end
        take(KEYS[1], job[1], job[2])
    end
else
    -- Lanes: the jobs without a key, and each key due to be looked at that has room under its
    -- limits. Each job taken is the next of the lane whose next job has the highest priority,
    -- and among equals of the lane served longest ago; a lane served goes to the back.
    local lanes = {}
    if #unkeyed > 0 then
        lanes[1] = {ready = KEYS[1], jobs = unkeyed, next = 1, taken = 0,
            turn = tonumber(redis.call('GET', flow .. 'turn')) or 0}
    end
    local keys = redis.call('ZRANGEBYSCORE', flow .. 'keys', '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
    for i = 1, #keys, 2 do
        local key = keys[i]
        local key_concurrent, key_rate = flow_limits(flow, key)
        local room = wanted
        local look_again = nil
        local key_tokens, key_burst = 0, 0
        local slots = nil
        if key_concurrent > 0 then
            limited = 1
            slots = key_concurrent - redis.call('HLEN', flow .. 'open:' .. key)
            room = math.min(room, slots)
            if room <= 0 then look_again = FLOW_BLOCKED end
        end
        if not look_again and key_rate > 0 then
            key_tokens, key_burst = flow_tokens(flow, key, key_rate, server_ms)
            room = math.min(room, math.floor(key_tokens))
            if room <= 0 then look_again = now + math.ceil((1 - key_tokens) / key_rate * 1000) end
        end
        if look_again then
            redis.call('ZADD', flow .. 'keys', string.format('%.0f', look_again), key)
        else
            local ready = flow .. 'ready:' .. key
            local jobs = due_jobs(ready, room)
            if #jobs == 0 then
                flow_rescore(flow, key, 0)
            else
                lanes[#lanes + 1] = {key = key, ready = ready, jobs = jobs, next = 1, taken = 0, slots = slots,
                    turn = tonumber(keys[i + 1]), rate = key_rate, tokens = key_tokens, burst = key_burst}
            end
        end
    end
    -- Turns handed out only grow (the queue's turn clock): within one ms, by thousandths.
    local clock = math.max(now - 1, tonumber(redis.call('GET', flow .. 'clock')) or 0)
    while #claimed < 2 * wanted do
        local best, best_priority = nil, nil
        for _, lane in ipairs(lanes) do
            local job = lane.jobs[lane.next]
            if job then
                local priority = -math.floor(tonumber(job[2]) / band)
                if best == nil or priority > best_priority or (priority == best_priority and lane.turn < best.turn) then
                    best, best_priority = lane, priority
                end
            end
        end
        if best == nil then break end
        local job = best.jobs[best.next]
        best.next = best.next + 1
        local held = job[2]
        if best.key then held = job[2] .. '|' .. best.key end
        if take(best.ready, job[1], held) then
            if best.key then redis.call('HSET', flow .. 'open:' .. best.key, job[1], ARGV[6]) end
            best.taken = best.taken + 1
            clock = clock + 0.001
            best.turn = clock  -- to the back, and still due
        end
    end
    redis.call('SET', flow .. 'clock', string.format('%.3f', clock), 'PX', 3600000)
    for _, lane in ipairs(lanes) do
        if lane.taken > 0 then
            if not lane.key then
                redis.call('SET', flow .. 'turn', string.format('%.3f', lane.turn), 'PX', 3600000)
            else
                if lane.rate > 0 then
                    flow_keep_tokens(flow, lane.key, lane.tokens - lane.taken, lane.rate, lane.burst, server_ms)
                end
                if lane.slots and lane.taken >= lane.slots then
                    redis.call('ZADD', flow .. 'keys', string.format('%.0f', FLOW_BLOCKED), lane.key)
                else
                    flow_rescore(flow, lane.key, lane.turn)
                end
            end
        end
    end
    local next_key = redis.call('ZRANGEBYSCORE', flow .. 'keys', string.format('(%.0f', now),
        string.format('(%.0f', FLOW_BLOCKED), 'WITHSCORES', 'LIMIT', 0, 1)
    if #next_key > 0 then
        local due_in = math.ceil(tonumber(next_key[2]) - now)
        if wait < 0 or due_in < wait then wait = due_in end
    end
end
take_tokens(#claimed / 2)
for priority = highest_band(KEYS[1]), 0, -1 do
    local base = -priority * band
    local later = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%.0f', base + now),
        string.format('%.0f', base + band - 1), 'WITHSCORES', 'LIMIT', 0, 1)
    if #later > 0 then
        local due_in = tonumber(later[2]) - base - now
        if wait < 0 or due_in < wait then wait = due_in end
    end
end
return {claimed, aborts, wait, limited, started}
"""
)

# What a queue's rate limits and its flow keys' hold back now, read as CLAIM_SCRIPT reckons
# (nothing written): the calls its live workers hold, its due ready jobs (every priority band,
# keyed ones too), its concurrency limit, and the whole tokens its bucket would have now (-1
# without a rate); its flow keys with ready jobs, the due jobs of the keys (of the first ARGV[5]
# read) waiting for a slot or a token of their own, and the ARGV[6] of them with the most due.
# KEYS: queue, the queue's worker leases, its limits, its token bucket. ARGV: now (ms), held-hash
# key prefix, the priority band (ms), the queue's flow prefix, keys read at most, busiest shown.
# Returns {open calls, due ready jobs, max concurrent (0: none), whole tokens (-1: no rate), flow
# keys, due waiting for a key's slot, due waiting for a key's token, {key, due, open, ...}}.
LIMITS_STATE_SCRIPT = (
    SHARED_FUNCTIONS
    + """
redis.replicate_commands()
local now = tonumber(ARGV[1])
local time = redis.call('TIME')
local server_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local open = open_calls(KEYS[2], ARGV[2], server_ms)
local band = tonumber(ARGV[3])
local function due_in(ready)
    local due = 0
    for priority = highest_band(ready), 0, -1 do
        local base = -priority * band
        due = due + redis.call('ZCOUNT', ready, string.format('%.0f', base), string.format('%.0f', base + now))
    end
    return due
end
local due = due_in(KEYS[1])
local limits = redis.call('HMGET', KEYS[3], 'rate', 'burst', 'concurrent')
local rate = tonumber(limits[1]) or 0
local tokens = -1
if rate > 0 then
    local burst = tonumber(limits[2]) or 1
    local bucket = redis.call('HMGET', KEYS[4], 'tokens', 'at')
    local at = tonumber(bucket[2]) or server_ms
    tokens = math.floor(math.min(burst, (tonumber(bucket[1]) or burst) + math.max(0, server_ms - at) * rate / 1000))
end
local flow = ARGV[4]
local key_count = redis.call('ZCARD', flow .. 'keys')
local for_slot, for_token = 0, 0
local keyed = {}
for _, key in ipairs(redis.call('ZRANGE', flow .. 'keys', 0, tonumber(ARGV[5]) - 1)) do
    local key_due = due_in(flow .. 'ready:' .. key)
    local key_open = redis.call('HLEN', flow .. 'open:' .. key)
    local key_concurrent, key_rate = flow_limits(flow, key)
    if key_concurrent > 0 and key_open >= key_concurrent then
        for_slot = for_slot + key_due
    elseif key_rate > 0 and flow_tokens(flow, key, key_rate, server_ms) < 1 then
        for_token = for_token + key_due
    end
    due = due + key_due
    keyed[#keyed + 1] = {key, key_due, key_open}
end
table.sort(keyed, function(a, b) return a[2] > b[2] or (a[2] == b[2] and a[1] < b[1]) end)
local busiest = {}
for i = 1, math.min(#keyed, tonumber(ARGV[6])) do
    busiest[#busiest + 1] = keyed[i][1]
    busiest[#busiest + 1] = keyed[i][2]
    busiest[#busiest + 1] = keyed[i][3]
end
return {open, due, tonumber(limits[3]) or 0, tokens, key_count, for_slot, for_token, busiest}
"""
)

# Asking for a job's abort: arq's abort set, as arq's Job.abort writes it (arq aborts a job
# found there before it starts), and, when a worker holds the job (its in-progress key names
# the worker), that worker's abort set, which its next claim reads. The abort set expires after
# ARGV[4] ms as a backstop; a live worker empties it within a poll, a lapsed one's goes with its
# calls. The holder's own bell rings, so a worker waiting for work wakes for it.
# KEYS: arq's abort set, the job's in-progress key. ARGV: now (ms), job id, abort-set key
# prefix, its TTL (ms), worker-bell key prefix, bell length. Returns 1 when a worker held the job.
ABORT_SCRIPT = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local holder = redis.call('GET', KEYS[2])
-- A holder is '<worker id>#<token>'; a bare arq worker's in-progress value is '1'.
if not holder or not string.find(holder, '#', 1, true) then return 0 end
local aborts = ARGV[3] .. holder
redis.call('SADD', aborts, ARGV[2])
redis.call('PEXPIRE', aborts, ARGV[4])
local bell = ARGV[5] .. holder
redis.call('LPUSH', bell, '1')
redis.call('LTRIM', bell, 0, tonumber(ARGV[6]) - 1)
redis.call('PEXPIRE', bell, ARGV[4])
return 1
"""

# A worker giving back what it holds: the ids in ARGV[3..] (or everything when none is named)
# return to the queue at the score they were claimed at, unless arq already has them queued,
# and leave the worker's held hash; their in-progress keys go if this worker set them. With no
# id named, the worker also leaves the queue's leases (a clean stop). What it put back rings
# the queue's bell.
# A job with a flow key returns to its key's ready set, and its slot frees.
# KEYS: queue, this worker's held hash, the queue's worker leases, the queue's bell.
# ARGV: in-progress key prefix, this worker's name, bell length, the queue's flow prefix, ids...
HAND_BACK_SCRIPT = (
    SHARED_FUNCTIONS
    + """
local ids = {}
local returned = 0
if #ARGV > 4 then
    for i = 5, #ARGV do ids[#ids + 1] = ARGV[i] end
else
    ids = redis.call('HKEYS', KEYS[2])
    redis.call('ZREM', KEYS[3], ARGV[2])
end
for _, id in ipairs(ids) do
    local held = redis.call('HGET', KEYS[2], id)
    if held then
        local score, key = flow_held(held)
        redis.call('HDEL', KEYS[2], id)
        if key then
            returned = returned + flow_ready(ARGV[4], key, id, score)
            flow_release(ARGV[4], key, id, ARGV[2])
        else
            returned = returned + redis.call('ZADD', KEYS[1], 'NX', score, id)
        end
    end
    local in_progress = ARGV[1] .. id
    if redis.call('GET', in_progress) == ARGV[2] then redis.call('DEL', in_progress) end
end
if returned > 0 then
    redis.call('LPUSH', KEYS[4], '1')
    redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[3]) - 1)
end
return #ids
"""
)

# The end of a keyed job's call, in the worker's transaction of job ends (run with EVAL: a
# script in a transaction makes redis-py ask SCRIPT EXISTS first): a job to run again returns to
# its key's ready set, its slot frees, and the queue's bell rings when a key that waited for a
# slot has jobs ready. No KEYS (the flow keys are named from the prefix).
# ARGV: the queue's flow prefix, the key, job id, the worker's name, the score to run again at
# ('' when it finished), the queue's bell, bell length.
FLOW_FINISH_SCRIPT = (
    SHARED_FUNCTIONS
    + """
if ARGV[5] ~= '' then flow_ready(ARGV[1], ARGV[2], ARGV[3], ARGV[5]) end
if flow_release(ARGV[1], ARGV[2], ARGV[3], ARGV[4]) then
    redis.call('LPUSH', ARGV[6], '1')
    redis.call('LTRIM', ARGV[6], 0, tonumber(ARGV[7]) - 1)
end
return 1
"""
)

# A job taken out of where it waits, to be enqueued afresh (a DEBOUNCE create moved it): out of
# its ready set (the queue's, or its flow key's), and its job key deleted, unless a worker holds
# it (the worker's claim in PostgreSQL then finds it not due, and defers it to when it is).
# KEYS: job key, in-progress key, the ready set it waits in. ARGV: job id. Returns 1 when taken.
UNQUEUE_SCRIPT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('ZREM', KEYS[3], ARGV[1]) == 0 then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

# A worker's heartbeat: its lease pushed on to TTL from now, on Redis's clock (as CLAIM_SCRIPT
# renews it at every poll). KEYS: the queue's worker leases. ARGV: lease TTL (ms), worker name.
RENEW_LEASE_SCRIPT = """
redis.replicate_commands()
local time = redis.call('TIME')
local server_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZADD', KEYS[1], server_ms + tonumber(ARGV[1]), ARGV[2])
return server_ms
"""

# A queue's resume (its paused flag removed), ringing its bell when it was paused: its workers
# wait on the bell while it is. KEYS: paused flag, the queue's bell. ARGV: bell length.
RESUME_SCRIPT = """
if redis.call('DEL', KEYS[1]) == 1 then
    redis.call('LPUSH', KEYS[2], '1')
    redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[1]) - 1)
end
return 1
"""
