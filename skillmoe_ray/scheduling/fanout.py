"""One stage on several GPU slots at once, one thread per slot, with follow-up groups streamed in.

:class:`FanOut` drives a :class:`~skillmoe_ray.scheduling.executor.SlotExecutor` through its public
interface: ``run_queue`` and ``run_group`` (a slot's work), ``homes`` (where experts live) and
``condition`` (notified as groups finish).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from skillmoe_ray.scheduling.grouping import ExpertGroup

if TYPE_CHECKING:
    from skillmoe_ray.scheduling.executor import SlotExecutor


class FanOut:
    """One stage on several slots (one thread each), with streamed follow-up groups.

    A follow-up group runs on its expert's slot: the home slot, or the slot its expert was given
    in this stage, or else the slot that found it free. A slot that has finished its own queue
    waits for follow-ups until every slot is done and nothing more can become ready.
    """

    def __init__(self, ex: SlotExecutor, stage: str, queues: list[list[ExpertGroup]], callbacks, followup, bar):
        self.ex, self.stage, self.queues, self.callbacks, self.followup, self.bar = ex, stage, queues, callbacks, followup, bar
        self.claimed = {**ex.homes(), **{g.key: slot for slot, q in enumerate(queues) for g in q}}
        self.waiting: list[list[ExpertGroup]] = [[] for _ in queues]
        self.finished = 0
        self.running = 0
        self.errors: list[BaseException] = []

    def run(self) -> None:
        threads = [threading.Thread(target=self._worker, args=(slot,)) for slot in range(len(self.queues))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.errors:
            raise self.errors[0]

    def _worker(self, slot: int) -> None:
        try:
            self.ex.run_queue(self.stage, slot, self.queues[slot], self.callbacks, self.bar)
        except BaseException as exc:
            self.errors.append(exc)
        with self.ex.condition:
            self.finished += 1
            self.ex.condition.notify_all()
        if self.followup is not None and not self.errors:
            self._follow_ups(slot)

    def _follow_ups(self, slot: int) -> None:
        cond = self.ex.condition
        while True:
            with cond:
                self._collect(slot)
                if self.waiting[slot]:
                    group = self.waiting[slot].pop(0)
                    self.running += 1
                elif self.finished == len(self.queues) and self.running == 0 and not any(self.waiting):
                    cond.notify_all()
                    return
                else:
                    cond.wait(0.05)
                    continue
            try:
                self.ex.run_group(self.stage, slot, group, (), self.callbacks, self.bar)
            except BaseException as exc:
                self.errors.append(exc)
            with cond:
                self.running -= 1
                cond.notify_all()
            if self.errors:
                return

    def _collect(self, slot: int) -> None:
        """Route newly ready follow-up groups to the slot that owns their expert."""
        for group in self.followup():
            target = self.claimed.setdefault(group.key, slot)
            self.waiting[target].append(group)
