"""Fault hooks for the fault-injection suite (``make chaos``); inert unless a FAULT_* setting asks."""

from __future__ import annotations

import logging
import os
import random
import signal

__all__ = ["crash_after_commit"]

logger = logging.getLogger(__name__)


def crash_after_commit(probability: float) -> None:
    """With ``probability``, dies the hardest way (SIGKILL) between a commit and its enqueue: the
    window the reconciler exists for. FAULT_CRASH_AFTER_COMMIT sets it; 0 by default."""
    if probability and random.random() < probability:
        logger.critical("fault injection: FAULT_CRASH_AFTER_COMMIT fired; killing this process")
        os.kill(os.getpid(), signal.SIGKILL)
