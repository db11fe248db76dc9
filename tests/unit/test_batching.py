"""The micro-batcher: bursts become batches.

Arrivals during a batch form the next one, failures reach every caller.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from skillmoe_ray.serving.batching import DEFER, MicroBatcher


def run(coro):
    return asyncio.run(coro)


def test_a_burst_within_the_window_is_processed_as_one_batch():
    seen = []

    def process(items):
        seen.append(list(items))
        return [i * 10 for i in items]

    async def main():
        batcher = MicroBatcher(process, window_s=0.05, max_batch=64)
        return await asyncio.gather(*(batcher.submit(i) for i in range(20))), batcher

    results, batcher = run(main())
    assert results == [i * 10 for i in range(20)]
    assert seen == [list(range(20))] and batcher.stats.batches == 1 and batcher.stats.largest_batch == 20


def test_batches_are_capped_at_max_batch():
    sizes = []

    async def main():
        batcher = MicroBatcher(lambda items: sizes.append(len(items)) or list(items), 0.01, max_batch=4)
        await asyncio.gather(*(batcher.submit(i) for i in range(10)))

    run(main())
    assert sizes == [4, 4, 2]


def test_arrivals_during_a_batch_wait_for_the_next_and_a_cancelled_caller_is_skipped():
    """Serve bounds what reaches the batcher; the batcher counts it (depth) and drops callers that gave up."""
    release = threading.Event()
    seen = []

    def slow(items):
        seen.append(list(items))
        release.wait(5)
        return list(items)

    async def main():
        batcher = MicroBatcher(slow, window_s=0.01, max_batch=8)
        first = asyncio.ensure_future(batcher.submit("a"))
        await asyncio.sleep(0.05)  # "a" is being processed; the next arrivals wait
        waiting = [asyncio.ensure_future(batcher.submit(x)) for x in ("b", "c", "gave-up")]
        await asyncio.sleep(0)
        depth = batcher.depth
        waiting[2].cancel()  # as a request past its timeout is
        release.set()
        return depth, await asyncio.gather(first, *waiting[:2]), batcher

    depth, done, batcher = run(main())
    assert depth == 4 and done == ["a", "b", "c"]
    assert seen == [["a"], ["b", "c"]] and batcher.retry_after() >= 1


def test_a_failing_batch_fails_its_callers_and_the_loop_keeps_going():
    calls = []

    def flaky(items):
        calls.append(list(items))
        if len(calls) == 1:
            raise RuntimeError("engine exploded")
        return list(items)

    async def main():
        batcher = MicroBatcher(flaky, window_s=0.01, max_batch=8)
        with pytest.raises(RuntimeError, match="engine exploded"):
            await batcher.submit("x")
        return await batcher.submit("y"), batcher.alive(), batcher

    result, alive, batcher = run(main())
    assert result == "y" and alive and batcher.stats.errors


def test_swap_aware_items_delivered_early_settle_before_the_batch_ends_and_deferred_ones_come_back():
    """'warm' is delivered before the slow 'cold' work.

    'later' is deferred once, then answered with the next.
    """
    release = threading.Event()
    calls = []

    def process(items, deliver, deferrable):
        calls.append((list(items), list(deferrable)))
        for index, item in enumerate(items):
            if item == "warm":
                deliver(index, "warm done")
        if "cold" in items:
            assert release.wait(10)  # a cold load, held until the warm caller has its answer
        return [DEFER if item == "later" and may else f"{item} done" for item, may in zip(items, deferrable)]

    async def main():
        batcher = MicroBatcher(process, window_s=0.01, max_batch=8, max_defer_s=60)
        warm = asyncio.ensure_future(batcher.submit("warm"))
        cold = asyncio.ensure_future(batcher.submit("cold"))
        assert await warm == "warm done" and not cold.done()  # not held up by the cold load
        release.set()
        return await cold, await asyncio.wait_for(batcher.submit("later"), 5)

    with pytest.raises(asyncio.TimeoutError):  # deferrable for 60 s: it waits to share a load
        run(main())
    assert calls[0][0] == ["warm", "cold"]
    assert [c[0] for c in calls[1:]] and all(c == (["later"], [True]) for c in calls[1:])


def test_an_item_past_max_defer_is_answered_not_deferred():
    def process(items, deliver, deferrable):
        return [DEFER if may else f"{item} done" for item, may in zip(items, deferrable)]

    async def main():
        batcher = MicroBatcher(process, window_s=0.01, max_batch=8, max_defer_s=0.05)
        return await asyncio.wait_for(batcher.submit("x"), 5), batcher.stats.batches

    answer, batches = run(main())
    assert answer == "x done" and batches >= 2  # deferred at least once, then answered
