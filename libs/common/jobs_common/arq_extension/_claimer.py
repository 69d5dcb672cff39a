"""Which due jobs this worker starts, in one Redis round trip (:data:`CLAIM_SCRIPT`)."""

from __future__ import annotations

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix

from jobs_common.arq_extension._scripts import CLAIM_SCRIPT

__all__ = ["DueJobClaimer"]


class DueJobClaimer:
    """Claims due jobs of one queue; the script is registered once, then run by its SHA."""

    def __init__(self, redis: ArqRedis, queue: str, paused_key: str) -> None:
        self._script = redis.register_script(CLAIM_SCRIPT)
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
