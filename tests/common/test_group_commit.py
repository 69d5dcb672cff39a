"""Group commit: a lone write goes out at once; writes that arrive while a batch is written share
the next one; each caller gets its own answer or its batch's error."""

from __future__ import annotations

import asyncio

import pytest

from jobs_common.group_commit import GroupCommit


class Writes:
    """A write that records each batch and holds it until the test lets it go."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.go = asyncio.Event()
        self.fail_next: Exception | None = None

    async def __call__(self, items: list[int]) -> list[str]:
        self.batches.append(items)
        await self.go.wait()
        if self.fail_next is not None:
            failure, self.fail_next = self.fail_next, None
            raise failure
        return [f"written {item}" for item in items]


async def _started(writes: Writes, batches: int) -> None:
    while len(writes.batches) < batches:
        await asyncio.sleep(0)


async def test_a_lone_write_goes_out_at_once_and_alone():
    writes = Writes()
    writes.go.set()
    group = GroupCommit(writes, max_batch=10)
    assert await group.submit(1) == "written 1"
    assert writes.batches == [[1]]


async def test_writes_that_arrive_during_a_batch_share_the_next():
    writes = Writes()
    group = GroupCommit(writes, max_batch=10)
    first = asyncio.create_task(group.submit(0))
    await _started(writes, 1)
    rest = [asyncio.create_task(group.submit(n)) for n in range(1, 25)]
    await asyncio.sleep(0)
    assert writes.batches == [[0]]  # one batch in flight at a time
    writes.go.set()
    assert await first == "written 0"
    assert await asyncio.gather(*rest) == [f"written {n}" for n in range(1, 25)]
    assert writes.batches == [[0], list(range(1, 11)), list(range(11, 21)), list(range(21, 25))]
    assert (group.batches, group.items) == (4, 25)


async def test_two_batches_may_be_in_flight():
    writes = Writes()
    group = GroupCommit(writes, max_batch=10, max_in_flight=2)
    calls = [asyncio.create_task(group.submit(n)) for n in range(4)]
    await _started(writes, 2)
    await asyncio.sleep(0)
    assert writes.batches == [[0], [1]]  # 2 and 3 wait for one of them
    writes.go.set()
    assert await asyncio.gather(*calls) == [f"written {n}" for n in range(4)]
    assert writes.batches == [[0], [1], [2, 3]]


async def test_an_error_fails_its_batch_only():
    writes = Writes()
    group = GroupCommit(writes, max_batch=10)
    first = asyncio.create_task(group.submit(0))
    await _started(writes, 1)
    second = [asyncio.create_task(group.submit(n)) for n in (1, 2)]
    writes.fail_next = ConnectionError("PostgreSQL went away")
    writes.go.set()
    with pytest.raises(ConnectionError, match="went away"):
        await first
    assert await asyncio.gather(*second) == ["written 1", "written 2"]


async def test_a_cancelled_caller_leaves_its_batch_written_and_its_answer_to_on_abandoned():
    writes = Writes()
    abandoned: list[tuple[int, str]] = []
    group = GroupCommit(writes, max_batch=10, on_abandoned=lambda item, answer: abandoned.append((item, answer)))
    calls = [asyncio.create_task(group.submit(n)) for n in range(3)]
    await _started(writes, 1)
    calls[1].cancel()
    writes.go.set()
    assert await calls[0] == "written 0"
    assert await calls[2] == "written 2"
    assert calls[1].cancelled()
    assert abandoned == [(1, "written 1")]


async def test_a_write_that_answers_the_wrong_number_of_results_fails_the_batch():
    async def short(items: list[int]) -> list[str]:
        return ["only one"]

    writes = Writes()
    group = GroupCommit(writes, max_batch=10)
    first = asyncio.create_task(group.submit(0))
    await _started(writes, 1)
    group._write = short  # the next batch's write answers one result for two items
    calls = [asyncio.create_task(group.submit(n)) for n in (1, 2)]
    writes.go.set()
    assert await first == "written 0"
    for call in calls:
        with pytest.raises(RuntimeError, match="a batch of 2 writes answered 1 results"):
            await call
