"""The api freezes its start while it serves (jobs_api.heap): full collections skip it, and
nothing stays frozen once it stops."""

from __future__ import annotations

import gc
import weakref

from jobs_api.heap import start_frozen
from tests.support.apis import private_api


async def test_a_serving_api_has_its_start_frozen_and_unfreezes_it_when_it_stops(settings):
    gc.unfreeze()  # whatever an earlier test left frozen
    async with private_api(settings):
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


def test_what_was_frozen_is_unfrozen_after_and_garbage_is_not_frozen():
    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the cyclic collector frees it

    garbage = weakref.ref(Node())  # garbage already: collected first, not frozen
    assert garbage() is not None
    with start_frozen():
        assert gc.get_freeze_count() > 0
        assert garbage() is None
    assert gc.get_freeze_count() == 0
