"""Online micro-batching: the batch-mode idea applied to a stream of requests.

Requests that arrive within ``window_s`` of each other are processed together (at most
``max_batch``), so the router can group their work by expert and each expert serves them in one
engine call. One batch is processed at a time, in a worker thread, so the event loop stays free to
accept requests while engines generate. The queue has no bound of its own: Ray Serve bounds what
reaches it (``max_ongoing_requests`` per replica, ``max_queued_requests`` waiting in Serve, beyond
which Serve rejects a request and the service answers 503 with Retry-After).

Swap-aware (``max_defer_s`` given): ``process(items, deliver, deferrable)`` may settle items early with
``deliver(index, result)`` (the router answers the requests whose models are resident before it loads a cold
one for the others), and may answer :data:`DEFER` for an item still ``deferrable`` (queued less than
``max_defer_s``): the item goes back to the front of the queue and is processed with the next batch, so
requests needing the same cold model share one load.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
# A result meaning: queue this item again (it waits, bounded by max_defer_s, to share a model load)
DEFER = object()


@dataclass
class BatcherStats:
    """Counters exposed by /v1/stats."""

    submitted: int = 0
    batches: int = 0
    largest_batch: int = 0
    busy_seconds: float = 0.0
    last_batch_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


class MicroBatcher:
    """Collects submitted items into batches and runs ``process(items) -> results`` on each batch."""

    def __init__(
        self,
        process: Callable[[Sequence[Any]], Sequence[Any]],
        window_s: float = 0.05,
        max_batch: int = 64,
        max_defer_s: float | None = None,
    ):
        self.process = process
        self.window_s = window_s
        self.max_batch = max_batch
        self.max_defer_s = max_defer_s  # None: process(items) answers a whole batch at once
        self.pending: list[tuple[Any, asyncio.Future]] = []
        self.arrived: dict[asyncio.Future, float] = {}  # when each queued item was first submitted
        self.in_flight = 0
        self.stats = BatcherStats()
        self._wakeup: asyncio.Event | None = None
        self._loop_task: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        """Requests waiting or being processed."""
        return len(self.pending) + self.in_flight

    def retry_after(self) -> int:
        """Seconds a rejected client should wait: about one batch's processing time, at least 1."""
        return max(1, round(self.stats.last_batch_seconds or 1.0))

    async def submit(self, item: Any) -> Any:
        """Queue ``item`` and wait for its result (or the exception that failed its batch)."""
        self._ensure_loop()
        future = asyncio.get_running_loop().create_future()
        self.pending.append((item, future))
        self.arrived[future] = time.monotonic()
        self.stats.submitted += 1
        self._wakeup.set()
        return await future

    def alive(self) -> bool:
        """Whether the batching loop is running (or not started yet)."""
        return self._loop_task is None or not self._loop_task.done()

    def _ensure_loop(self) -> None:
        if self._loop_task is None:
            self._wakeup = asyncio.Event()
            self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            await asyncio.sleep(self.window_s)  # let the rest of a burst arrive
            batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch :]
            if not self.pending:
                self._wakeup.clear()
            for _, fut in batch:
                if fut.cancelled():
                    self.arrived.pop(fut, None)
            batch = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if batch:
                await self._process(batch)

    async def _process(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        self.in_flight = len(batch)
        start = time.perf_counter()
        try:
            results = await asyncio.to_thread(self._call(batch))
        except Exception as exc:  # the batch failed as a whole: every request in it gets the error
            log.exception("batch of %d failed", len(batch))
            self.stats.errors = (self.stats.errors + [repr(exc)])[-5:]
            results = [exc] * len(batch)
        finally:
            self.in_flight = 0
        seconds = time.perf_counter() - start
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        self.stats.busy_seconds += seconds
        self.stats.last_batch_seconds = seconds
        deferred = [(item, future) for (item, future), result in zip(batch, results)
                    if result is DEFER and not future.done()]
        if deferred:  # back to the front of the queue, to share a load with the next batch
            self.pending = deferred + self.pending
            self._wakeup.set()
        for (_, future), result in zip(batch, results):
            if result is not DEFER:
                settle(future, result)
                self.arrived.pop(future, None)

    def _call(self, batch: list[tuple[Any, asyncio.Future]]) -> Callable[[], Sequence[Any]]:
        """The processing call for ``batch``: plain, or swap-aware (early delivery, deferrable items)."""
        items = [item for item, _ in batch]
        if self.max_defer_s is None:
            return lambda: self.process(items)
        loop, now = asyncio.get_running_loop(), time.monotonic()
        deferrable = [now - self.arrived.get(future, now) < self.max_defer_s for _, future in batch]

        def deliver(index: int, result: Any) -> None:  # from the processing thread
            loop.call_soon_threadsafe(settle, batch[index][1], result)

        return lambda: self.process(items, deliver, deferrable)


def settle(future: asyncio.Future, result: Any) -> None:
    """Resolve ``future`` with ``result`` (an exception fails it), unless it is settled already."""
    if future.done():
        return
    if isinstance(result, Exception):
        future.set_exception(result)
    else:
        future.set_result(result)
