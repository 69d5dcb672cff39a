"""Our claim path on top of arq: which due jobs this worker starts, in one Redis round trip.

arq 0.28's ``start_jobs`` spends three round trips (WATCH, EXISTS, ZSCORE, then MULTI/EXEC) on
*every* id in its read window, and running jobs stay in that window until they finish. With a
few hundred long calls in flight, each poll re-checks all of them: measured with 400 calls open,
the worker burnt 65 % of a core doing nothing, and new jobs waited p50 343 ms instead of 9 ms.

This script does the same checks server-side: read the due window, skip ids whose in-progress
key exists (running here or elsewhere), set the in-progress key of the ones it takes as arq does
(but for WORKER_LEASE_TTL, renewed by the worker's heartbeat, instead of the longest job timeout),
and return at most ``wanted`` of them with their scores.
"""

from __future__ import annotations

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix

__all__ = ["DueJobClaimer"]

_CLAIM_SCRIPT = """
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


class DueJobClaimer:
    """Claims due jobs of one queue; the script is registered once, then run by its SHA."""

    def __init__(self, redis: ArqRedis, queue: str, paused_key: str) -> None:
        self._script = redis.register_script(_CLAIM_SCRIPT)
        self._queue = queue
        self._paused_key = paused_key

    async def claim(self, now_ms: int, read_limit: int, wanted: int, in_progress_ms: int) -> list[tuple[str, int]]:
        """Marks up to ``wanted`` due, not-running jobs in progress; returns (id, score). Claims
        nothing while the queue's paused key exists."""
        if wanted <= 0:
            return []
        flat = await self._script(
            keys=[self._queue, self._paused_key],
            args=[now_ms, read_limit, wanted, in_progress_ms, in_progress_key_prefix],
        )
        return [(flat[i].decode(), int(float(flat[i + 1]))) for i in range(0, len(flat), 2)]
