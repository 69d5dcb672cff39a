"""Names in Redis: arq's job ids and queues for our executions, and our own keys beside them."""

from __future__ import annotations

__all__ = [
    "ABORTS_KEY_PREFIX",
    "ARQ_MAX_TRIES",
    "BELL_LENGTH",
    "FLOW_BLOCKED",
    "HELD_KEY_PREFIX",
    "MAX_IDLE_WAIT_MS",
    "RUN_EXECUTION",
    "WORKER_BELL_KEY_PREFIX",
    "aborts_key",
    "arq_job_id",
    "arq_queue_name",
    "flow_prefix",
    "flow_ready_key",
    "held_key",
    "paused_key",
    "queue_bell_key",
    "worker_bell_key",
    "worker_leases_key",
]

RUN_EXECUTION = "run_execution"

# Attempts are counted in PostgreSQL; arq's own try counter (which also counts redeliveries after
# a shutdown) is only a backstop against a bug that would loop forever.
ARQ_MAX_TRIES = 10_000


def arq_job_id(execution_id: object) -> str:
    return f"exec:{execution_id}"


def arq_queue_name(queue: str) -> str:
    return f"jobs:queue:{queue}"


# A queue's ready set holds every priority in one sorted set: a job of priority p is scored at
# its due time (ms) minus p bands, so priority 0 keeps arq's scores (the due time) and each
# higher one sorts below it. A band is longer than any due time (10^14 ms: the year 5138), and
# a score stays an exact integer in Redis's doubles (|score| < 2^53). The claim reads the bands
# from the highest in use down, each up to now.
PRIORITY_BAND_MS = 10**14


def priority_score(due_ms: int, priority: int) -> int:
    """The ready-set score of a job due at ``due_ms`` with ``priority``."""
    return due_ms - priority * PRIORITY_BAND_MS


def due_and_priority(score: int) -> tuple[int, int]:
    """The due time (ms) and priority a ready-set score stands for."""
    priority = -(score // PRIORITY_BAND_MS)
    return score + priority * PRIORITY_BAND_MS, priority


def flow_prefix(queue: str) -> str:
    """What the keys of a queue's flow-control keys (Job.flow_control) start with; the scripts add:

    * ``ready:<key>`` — the key's ready jobs, scored as the queue's ready set (a job with a flow
      key waits here, not there);
    * ``keys`` — sorted set of the keys with ready jobs, scored by when the claim should look at
      each next: its earliest due job, or later once it was served (its turn passes to the
      others), or when its next token comes, or ``FLOW_BLOCKED`` while its calls are all open
      (a call's end puts it back);
    * ``limits`` — hash key → ``"<max concurrent> <dispatches a second> <since ms>"``, the limits
      of the latest job created with the key (0: none); forgotten with the key's last job;
    * ``open:<key>`` — hash of the key's calls open now: job id → its worker (a lapsed worker's
      go when its calls are put back);
    * ``tokens:<key>`` — the key's token bucket, as the queue's;
    * ``turn`` — when the queue's jobs without a key were last served (their turn among the keys');
    * ``clock`` — the last turn handed out: turns only grow, by thousandths of a ms within one.

    ``turn`` and ``clock`` expire an hour after the last claim that served a key.
    """
    return f"jobs:flow:{queue}:"


def flow_ready_key(queue: str, key: str) -> str:
    """The ready set of a queue's flow key (``flow_prefix``'s ``ready:<key>``)."""
    return f"{flow_prefix(queue)}ready:{key}"


# A flow key's score in ``keys`` while all of its max_concurrent calls are open: beyond any due
# time, below 2^53.
FLOW_BLOCKED = 2**52


def paused_key(queue: str) -> str:
    """Exists while the queue is paused (QueueService.PauseQueue); its workers then claim nothing.
    PostgreSQL's queue_settings is the record; the reconciler sets this key again after a loss."""
    return f"jobs:paused:{queue}"


def limits_key(queue: str) -> str:
    """Hash of the queue's rate limits while it has any (``rate``: dispatches a second, ``burst``:
    the bucket's size, ``concurrent``: calls open at once; see QueueService.UpdateQueue).
    PostgreSQL's queue_settings is the record; the reconciler writes this key again after a loss."""
    return f"jobs:limits:{queue}"


def tokens_key(queue: str) -> str:
    """Hash of the queue's token bucket (``tokens``, and ``at``: when they were counted, ms on
    Redis's clock), kept by the claims while the queue has a rate limit."""
    return f"jobs:tokens:{queue}"


def worker_leases_key(queue: str) -> str:
    """Sorted set of the queue's workers (``<worker id>#<token>``), scored by when their lease
    lapses (ms): their heartbeat pushes it on; a claim anywhere puts a lapsed one's calls back."""
    return f"jobs:leases:{queue}"


HELD_KEY_PREFIX = "jobs:held:"


def held_key(holder: str) -> str:
    """Hash of what a worker holds: arq job id → the score it was claimed at (when it was due)."""
    return HELD_KEY_PREFIX + holder


ABORTS_KEY_PREFIX = "jobs:aborts:"


def aborts_key(holder: str) -> str:
    """Set of the jobs a worker holds that were asked to abort since its last poll: its claim
    reads and empties it, so a poll's cost for aborts does not grow with arq's abort set."""
    return ABORTS_KEY_PREFIX + holder


# The doorbells. A worker with nothing to claim waits on its queue's bell and its own (BLPOP)
# instead of polling: for the next job due, the next lease of another worker to lapse, a ring,
# or MAX_IDLE_WAIT_MS, whichever comes first. So whatever makes work claimable sooner than that
# rings: an enqueue or re-dispatch due within MAX_IDLE_WAIT_MS, a retry or a hand-back, a
# queue's resume, a lapsed worker's calls put back; an abort rings the holder's own bell. A
# job written by bare arq (which rings nothing) still runs, within MAX_IDLE_WAIT_MS.
MAX_IDLE_WAIT_MS = 1000
# A bell is a list of rings, trimmed to this many: one ring wakes one waiting worker, and
# rings nobody took (no worker was waiting) cost each a claim that finds nothing.
BELL_LENGTH = 64


def queue_bell_key(queue: str) -> str:
    """List rung when the queue has work claimable now (or within MAX_IDLE_WAIT_MS)."""
    return f"jobs:bell:queue:{queue}"


WORKER_BELL_KEY_PREFIX = "jobs:bell:worker:"


def worker_bell_key(holder: str) -> str:
    """List rung when a job the worker holds is asked to abort."""
    return WORKER_BELL_KEY_PREFIX + holder
