"""One stage on several GPU slots at once, one thread per slot, with follow-up groups streamed in.

:class:`FanOut` knows nothing of the executor: it is given each slot's queue, a function that runs one
group on a slot (the executor's ``run_group`` for this stage), the condition the executor notifies as
groups finish (and whose lock guards the fan-out's own counters), and where experts live now.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from skillmoe_ray.scheduling.grouping import ExpertGroup

# Runs a group on a slot: (slot, group, the groups after it in that slot's queue, for eviction and read-ahead)
RunGroup = Callable[[int, ExpertGroup, Sequence[ExpertGroup]], None]


class FanOut:
    """One stage on several slots (one thread each), with streamed follow-up groups.

    A follow-up group runs on its expert's slot: the home slot, or the slot its expert was given
    in this stage, or else the slot that found it free. A slot that has finished its own queue
    waits for follow-ups until every slot is done and nothing more can become ready.
    """

    def __init__(self, queues: list[list[ExpertGroup]], run_group: RunGroup, condition: threading.Condition,
                 homes: dict[str, int], followup: Callable[[], list[ExpertGroup]] | None):
        self.queues, self.run_group, self.condition, self.followup = queues, run_group, condition, followup
        self.claimed = {**homes, **{g.key: slot for slot, q in enumerate(queues) for g in q}}
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
        queue = self.queues[slot]
        try:
            for index, group in enumerate(queue):
                self.run_group(slot, group, queue[index + 1 :])
        except BaseException as exc:
            self.errors.append(exc)
        with self.condition:
            self.finished += 1
            self.condition.notify_all()
        if self.followup is not None and not self.errors:
            self._follow_ups(slot)

    def _follow_ups(self, slot: int) -> None:
        cond = self.condition
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
                self.run_group(slot, group, ())
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
