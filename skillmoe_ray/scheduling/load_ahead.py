"""Load-ahead: bring a slot's next cold expert in while the expert before it generates.

On a slot one expert generates at a time, and an expert that is not resident is loaded (or woken) before
its group runs: without overlap every such load adds its whole time to the stage. When the slot's memory
budget (co-residency, :mod:`skillmoe_ray.scheduling.residency`) has room for the next cold expert of the
slot's queue beside the one generating, evicting only copies the stage no longer needs and never one
every request needs, its load starts in a thread of its own as the current group starts generating. The
load runs in the expert's own process (a Ray actor; on a GPU, a wake's host-to-device copy), so it overlaps
the generation; the next group then finds its expert resident.

The load's thread evicts what makes room (decided on the slot's thread, among copies no one on the slot
touches meanwhile), then wakes or loads the copy; the copy becomes resident when the slot's thread settles
the load, which it does before it activates anything else on that slot. ``scheduler.load_ahead`` turns it
off; without a memory budget (one model per slot, ``scheduler.residency=single``) there is never room, so
nothing loads ahead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from skillmoe_ray.errors import one_line
from skillmoe_ray.scheduling.grouping import ExpertGroup
from skillmoe_ray.scheduling.slots import Activation, SlotState

log = logging.getLogger(__name__)


@dataclass
class PendingLoad:
    """A load-ahead in flight: the copy, its thread's result (wake | reload | load) and its phases."""

    copy: str
    future: Future
    phases: dict


class LoadAhead:
    """The load-aheads on the slots of a :class:`~skillmoe_ray.scheduling.slots.SlotState`, one per slot."""

    def __init__(self, slots: SlotState, enabled: bool):
        self.slots, self.enabled = slots, enabled
        self.pending: dict[int, PendingLoad] = {}
        self.done: dict[str, Activation] = {}  # copies brought in ahead whose group has not run yet
        self.started = 0
        self._pool: ThreadPoolExecutor | None = None

    def start(self, slot: int, current: str, rest: Sequence[ExpertGroup], keep: set[str],
              later: set[str] | None) -> str | None:
        """Start loading the first copy of ``rest`` (the slot's queue after ``current``) that is not resident,
        where the budget allows (:meth:`SlotState.plan_ahead`, protecting ``current`` and ``keep``).
        Returns the copy, or None when nothing was started."""
        if not self.enabled or slot in self.pending:
            return None
        target = next((g for g in rest if g.key not in self.slots.resident[slot]), None)
        if target is None:
            return None
        try:
            bring = self.slots.plan_ahead(slot, target.key, target.expert, keep | {current}, later)
        except Exception as exc:  # an optimization: the group loads its expert as usual when its turn comes
            log.warning("load-ahead of %s on slot %d not started: %s", target.key, slot, one_line(exc))
            return None
        if bring is None:
            return None
        log.info("expert %s: loading ahead on slot %d while %s generates", target.key, slot, current)
        phases: dict[str, float] = {}
        future = self._threads().submit(bring, phases)
        self.pending[slot] = PendingLoad(target.key, future, phases)
        self.started += 1
        return target.key

    def settle(self, slot: int) -> None:
        """Wait for ``slot``'s load-ahead, if one is in flight. The copy it brought in becomes resident and
        its activation is kept for the group that runs it (:meth:`taken`); a failed one is discarded, and its
        group loads it as usual (with the executor's retries)."""
        pending = self.pending.pop(slot, None)
        if pending is None:
            return
        try:
            kind = pending.future.result()
        except Exception as exc:
            log.warning("load-ahead of %s on slot %d failed (%s): it loads when its group runs",
                        pending.copy, slot, one_line(exc))
            self.slots.discard(slot, pending.copy)
            return
        self.done[pending.copy] = self.slots.admit(slot, pending.copy, kind, pending.phases)

    def taken(self, copy: str) -> Activation | None:
        """The activation of ``copy`` if a load-ahead brought it in (once: its group records it)."""
        return self.done.pop(copy, None)

    def settle_all(self) -> dict[str, Activation]:
        """Settle every slot's load-ahead (a stage's end); returns the activations no group took."""
        for slot in list(self.pending):
            self.settle(slot)
        leftover, self.done = self.done, {}
        return leftover

    def close(self) -> None:
        self.settle_all()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _threads(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=max(1, self.slots.policy.n_slots),
                                            thread_name_prefix="load-ahead")
        return self._pool
