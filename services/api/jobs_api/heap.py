"""The api's start, out of the cyclic garbage collector's sight.

CPython's full collections walk every object alive, and the api's start (imports, gRPC,
SQLAlchemy's compiled statements, the pools) is most of them and is never garbage. Frozen once
the api listens, a full collection under ``python -m bench.api_alone`` took 19 ms instead of
112 ms (measured with ``gc.callbacks``: 10-11 of them in 25 s of CPU, 1.12 -> 0.21 s in all),
each stopping the event loop, and every call in flight, that much less. CPython still makes them
(the api holds nothing for long, unlike the worker: jobs_worker._collector).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["start_frozen"]


@contextlib.contextmanager
def start_frozen() -> Iterator[None]:
    """Freezes what is alive now for the block, after collecting what is already garbage;
    unfrozen after it (an api served inside a longer process, as in tests, leaves nothing
    behind that could never be collected)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
