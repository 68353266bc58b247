"""The micro-batcher: a lone item goes at once, items arriving during a batch form the next one,
batches never exceed their bound, and each caller gets its own outcome."""

from __future__ import annotations

import asyncio

import pytest

from service.batcher import Batcher

pytestmark = pytest.mark.anyio


class _Recorder:
    """A process function that doubles its items and records every batch it was given;
    ``gate`` (when set) holds a batch until the test releases it."""

    def __init__(self, *, gate: asyncio.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.gate = gate
        self.entered = asyncio.Event()

    async def __call__(self, items: list[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        return [ValueError(f"odd {x}") if x < 0 else 2 * x for x in items]


async def test_a_lone_item_is_served_alone_without_waiting_for_company() -> None:
    record = _Recorder()
    batcher: Batcher[int, int] = Batcher(record, max_size=64)
    assert await batcher.submit(21) == 42
    assert await batcher.submit(4) == 8
    assert record.batches == [[21], [4]]


async def test_items_arriving_during_a_batch_go_together_in_the_next_one() -> None:
    gate = asyncio.Event()
    record = _Recorder(gate=gate)
    batcher: Batcher[int, int] = Batcher(record, max_size=64)
    first = asyncio.ensure_future(batcher.submit(1))
    await record.entered.wait()
    later = [asyncio.ensure_future(batcher.submit(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)  # the later items are queued behind the running batch
    gate.set()
    assert await first == 2
    assert await asyncio.gather(*later) == [4, 6, 8]
    assert record.batches == [[1], [2, 3, 4]]


async def test_batches_never_exceed_max_size_and_keep_arrival_order() -> None:
    record = _Recorder()
    sizes: list[int] = []
    waits: list[float] = []

    def observe(size: int, item_waits: list[float]) -> None:
        sizes.append(size)
        waits.extend(item_waits)

    batcher: Batcher[int, int] = Batcher(record, max_size=3, observe=observe)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(10)))
    assert results == [2 * n for n in range(10)]
    assert [x for batch in record.batches for x in batch] == list(range(10))
    assert max(len(batch) for batch in record.batches) <= 3
    assert sizes == [len(batch) for batch in record.batches]
    assert len(waits) == 10 and min(waits) >= 0


async def test_a_full_batch_does_not_wait_out_max_wait() -> None:
    record = _Recorder()
    # An hour of allowed wait: the test would time out if a full batch waited for it.
    batcher: Batcher[int, int] = Batcher(record, max_size=4, max_wait=3600)
    assert await asyncio.gather(*(batcher.submit(n) for n in range(4))) == [0, 2, 4, 6]
    assert record.batches == [[0, 1, 2, 3]]


async def test_max_wait_gathers_items_that_arrive_within_it() -> None:
    record = _Recorder()
    batcher: Batcher[int, int] = Batcher(record, max_size=3, max_wait=3600)
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.01)  # the dispatcher is waiting for company, not yet processing
    assert record.batches == []
    rest = asyncio.gather(batcher.submit(2), batcher.submit(3))
    assert (await first, *(await rest)) == (2, 4, 6)
    assert record.batches == [[1, 2, 3]]


async def test_each_caller_gets_its_own_error_and_a_failed_batch_fails_all_of_it() -> None:
    record = _Recorder()
    batcher: Batcher[int, int] = Batcher(record, max_size=8)
    outcomes = await asyncio.gather(
        batcher.submit(1), batcher.submit(-1), batcher.submit(2), return_exceptions=True
    )
    assert outcomes[0] == 2 and outcomes[2] == 4
    assert isinstance(outcomes[1], ValueError)

    async def broken_by_zero(items: list[int]) -> list[int | Exception]:
        if 0 in items:
            raise RuntimeError("boom")
        return [2 * x for x in items]

    flaky: Batcher[int, int] = Batcher(broken_by_zero, max_size=8)
    errors = await asyncio.gather(flaky.submit(0), flaky.submit(2), return_exceptions=True)
    assert all(isinstance(e, RuntimeError) for e in errors)
    assert await flaky.submit(3) == 6  # the next batch is served as usual
