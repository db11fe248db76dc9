"""The GPU slots' state: which copy of which expert is where, and in what state.

:class:`SlotState` is the half of the executor that knows the experts (DESIGN section 4): it opens a
handle per copy on its slot, activates a copy (load, wake, or reuse when resident), deactivates one (sleep
or unload, as the policy and the host-RAM budget allow), evicts residents to make room, probes a woken
expert, and discards a failed one. The other half, :mod:`skillmoe_ray.scheduling.executor`, drives stages
over it (queues, retries, chunks, fan-out). One lock guards the records; the executor's condition shares it.

- A slot keeps as many copies as fit its memory budget together, or one when the policy has none
  (:func:`~skillmoe_ray.scheduling.residency.evictions`): an incoming copy evicts the residents not needed
  later first, then the lowest ranked (``rank``: online, the keyword model and aggregator highest, experts
  by recent recruitment), then the least recently used.
- After a wake, a greedy probe compared with the one recorded at first load catches a wake that corrupted
  weights; a failed probe reloads the expert from disk.
- A replica (``expert#i``) is unloaded, never put to sleep, when its slot needs the room (it is not needed
  again under its own name).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from skillmoe_ray.engines.base import ACTIVE, SLEEPING, UNLOADED
from skillmoe_ray.engines.gpu_memory import sleeping_host_bytes
from skillmoe_ray.scheduling.handles import ExpertHandle
from skillmoe_ray.scheduling.policy import ExecutionPolicy
from skillmoe_ray.scheduling.residency import (
    ALWAYS_NEEDED,
    evictions,
    needed_again,
    sleeps_on_deactivation,
    touch,
)

log = logging.getLogger(__name__)


@dataclass
class ExpertCopy:
    """One copy of an expert on a slot (the expert itself, or a replica ``expert#i``) and what the
    executor knows of it: its handle (None once discarded: a fresh one opens on next use), its state,
    the weight bytes measured at load, the host RAM it holds asleep, and its probe reply at first load."""

    name: str
    expert: str
    slot: int
    handle: ExpertHandle | None = None
    state: str = UNLOADED
    weight_bytes: int = 0
    sleeping_bytes: int = 0
    probe: str | None = None


@dataclass(frozen=True)
class Activation:
    """How a copy became active (load | wake | reload | resident) and the seconds of each phase."""

    kind: str
    phases: dict[str, float] = field(default_factory=dict)


class SlotState:
    """The copies of experts on ``policy.n_slots`` slots, each opened by ``open_expert(expert, slot)``."""

    def __init__(self, open_expert: Callable[[str, int], ExpertHandle], policy: ExecutionPolicy):
        self.open_expert = open_expert
        self.policy = policy
        self.copies: dict[str, ExpertCopy] = {}  # copy name (expert or expert#i) -> its record
        # per slot, the resident copies, least recently used first
        self.resident: list[list[str]] = [[] for _ in range(policy.n_slots)]
        self.deactivations: Counter[str] = Counter()  # sleep | unload
        self.rank: dict[str, float] = {}  # expert -> how much it is worth keeping (the serving layer sets it)
        self.lock = threading.RLock()

    def resident_experts(self) -> list[str]:
        """Experts (and replicas, as expert#i) whose weights are on a GPU slot now."""
        return [e for slot in self.resident for e in slot]

    def homes(self) -> dict[str, int]:
        """Experts resident or asleep on a slot: they stay there."""
        return {name: c.slot for name, c in self.copies.items() if c.state in (ACTIVE, SLEEPING)}

    def handle(self, copy: str, slot: int, expert: str | None = None) -> ExpertHandle:
        """The handle of ``copy`` (an expert, or its replica expert#i) on ``slot``.

        An unloaded copy moving slots gets a fresh handle there.
        """
        with self.lock:
            record = self.copies.get(copy)
            if record is not None and record.handle is not None and record.slot != slot:
                if record.state != UNLOADED:
                    raise RuntimeError(f"expert {copy} is {record.state} on slot {record.slot}")
                record.handle.close()
                record.handle = None
            if record is None:
                record = self.copies[copy] = ExpertCopy(copy, expert or copy, slot)
            if record.handle is None:
                record.handle = self.open_expert(record.expert, slot)
                record.slot, record.state = slot, UNLOADED
            return record.handle

    def expert_of(self, copy: str) -> str:
        return self.copies[copy].expert if copy in self.copies else copy

    def state(self, copy: str) -> str:
        record = self.copies.get(copy)
        return record.state if record and record.handle else UNLOADED

    def read_ahead(self, copy: str, slot: int, expert: str) -> None:
        """Warm the page cache with a copy's weights if it will load from disk next on ``slot``."""
        if self.state(copy) == UNLOADED:
            try:
                self.handle(copy, slot, expert).prefetch()
            except Exception as exc:  # read-ahead is an optimization; never fail the stage for it
                log.debug("read-ahead of %s failed: %s", copy, exc)

    def activate(self, slot: int, copy: str, keep: set[str], later: set[str] | None) -> Activation:
        """Make ``copy`` (an expert or a replica) resident on ``slot``.

        ``keep``: copies needed later in this stage, evicted only when nothing else frees enough memory;
        ``later``: the experts any later stage uses (None: not known, every one may be needed again).
        """
        if touch(self.resident[slot], copy):
            return Activation("resident")
        phases: dict[str, float] = {}
        self._make_room(slot, copy, keep, later, phases)
        handle = self.handle(copy, slot)
        kind = self.bring_in(copy, handle, phases)
        return self.admit(slot, copy, kind, phases)

    def bring_in(self, copy: str, handle: ExpertHandle, phases: dict) -> str:
        """Wake or load ``copy`` through ``handle`` (its room made already). Returns wake | reload | load.

        Touches only the copy's record, so a load-ahead runs it in a thread of its own."""
        record = self.copies[copy]
        if record.state == SLEEPING:
            return self._wake(record, handle, phases)
        return self._load(record, handle, phases)

    def admit(self, slot: int, copy: str, kind: str, phases: dict) -> Activation:
        """Record ``copy``, brought in by ``kind``, as active and resident on ``slot``."""
        self.copies[copy].state = ACTIVE
        self.resident[slot].append(copy)
        return Activation(kind, {k: round(v, 3) for k, v in phases.items()})

    def plan_ahead(self, slot: int, copy: str, expert: str, protect: set[str],
                   later: set[str] | None) -> Callable[[dict], str] | None:
        """A load-ahead of ``copy`` on ``slot``: a call that evicts what makes room for it, then wakes or
        loads it (recording its phases; run in a thread of its own). None when it may not run now: the copy
        is resident already, the slot has no memory budget (one model at a time), it would start an engine
        where the policy allows wakes only (``load_ahead_loads``: vLLM on CUDA), or making room would evict
        a copy in ``protect`` (the one generating, the rest of the stage, the next stage's), one ranked above
        ``copy`` (online: recruited more often lately; its turn evicts by the plain rule instead) or one
        ranked :data:`ALWAYS_NEEDED` (the keyword model, the aggregator). The copy is not resident until
        :meth:`admit` (on the slot's own thread)."""
        if copy in self.resident[slot] or self.policy.gpu_memory_bytes is None:
            return None
        if not self.policy.load_ahead_loads and self.state(copy) != SLEEPING:  # wakes only
            return None
        evict = self._evictions(slot, copy, protect)
        if any(e in protect or not self._evictable_for(e, copy) for e in evict):
            return None
        handle = self.handle(copy, slot, expert)

        def bring(phases: dict) -> str:
            self._make_room(slot, copy, protect, later, phases, evict)
            return self.bring_in(copy, handle, phases)

        return bring

    def _evictable_for(self, resident: str, incoming: str) -> bool:
        """A load-ahead of ``incoming`` may evict ``resident``: it ranks neither above ``incoming`` nor as
        :data:`ALWAYS_NEEDED`."""
        rank = self.rank.get(resident, 0.0)
        return rank < ALWAYS_NEEDED and rank <= self.rank.get(incoming, 0.0)

    def room_for(self, copy: str) -> int | None:
        """The slot where ``copy`` fits beside the residents without evicting one (the emptiest), or None.

        Without a budget a slot holds one model: only an empty slot has room."""
        footprint, budget = self.policy.footprint, self.policy.gpu_memory_bytes
        free = []
        for residents in self.resident:
            if budget is None:
                free.append(0.0 if not residents else -1.0)
                continue
            used = sum(footprint(self.expert_of(e), self._weight_bytes(e)) for e in residents)
            free.append(budget - used - footprint(self.expert_of(copy), self._weight_bytes(copy)))
        best = max(range(len(free)), key=free.__getitem__, default=None)
        return best if best is not None and free[best] >= 0 else None

    def _make_room(self, slot: int, copy: str, keep: set[str], later: set[str] | None, phases: dict,
                   evict: list[str] | None = None) -> None:
        """Deactivate the residents ``copy`` evicts (``evict`` when decided already); a resident that cannot
        be deactivated leaves the slot."""
        residents = self.resident[slot]
        evict = self._evictions(slot, copy, keep) if evict is None else evict
        if not evict:
            return
        t = time.perf_counter()
        for previous in evict:
            again = needed_again(previous, self.expert_of(previous), keep, later)
            log.info("evicting %s from slot %d to make room for %s (%s)", previous, slot, copy,
                     "needed later" if previous in keep
                     else f"rank {self.rank.get(previous, 0):g}, least recent")
            try:
                self.deactivate(previous, again)
                residents.remove(previous)
            except Exception as exc:  # a dead resident (its actor died) leaves the slot; reopened on next use
                log.warning(
                    "expert %s could not be deactivated (%s): dropping it from slot %d", previous, exc, slot
                )
                self.discard(slot, previous)
        phases["deactivate_previous"] = round(time.perf_counter() - t, 3)

    def _evictions(self, slot: int, copy: str, keep: set[str]) -> list[str]:
        """The residents of ``slot`` that ``copy`` evicts by the residency rule (``keep`` evicted last)."""
        residents, footprint = self.resident[slot], self.policy.footprint
        footprints = {e: footprint(self.expert_of(e), self._weight_bytes(e)) for e in [*residents, copy]}
        return evictions(residents, footprints, copy, self.policy.gpu_memory_bytes, keep, self.rank)

    def _weight_bytes(self, copy: str) -> int:
        """Weight bytes measured at the copy's load (0 before its first, or where memory is not counted)."""
        return self.copies[copy].weight_bytes if copy in self.copies else 0

    def _wake(self, record: ExpertCopy, handle: ExpertHandle, phases: dict) -> str:
        """Wake a sleeping copy; a failed probe reloads it from disk. Returns wake | reload."""
        phases.update(handle.wake())
        record.sleeping_bytes = 0
        if not self.policy.probe_after_wake:
            return "wake"
        probe = handle.probe()
        phases["warmup_probe"] = probe["seconds"]
        if record.probe is None or probe["text"] == record.probe:
            return "wake"
        log.error("expert %s failed its probe after waking: reloading it from disk", record.name)
        handle.unload()
        phases.update(handle.load())
        return "reload"

    def _load(self, record: ExpertCopy, handle: ExpertHandle, phases: dict) -> str:
        """Load a copy from disk, recording its probe reply and (where memory counts) its weight bytes."""
        phases.update(handle.load())
        if self.policy.probe_after_wake:
            probe = handle.probe()
            record.probe = probe["text"]
            phases["probe"] = probe["seconds"]
        if self.policy.gpu_memory_bytes is not None:
            record.weight_bytes = handle.info().weight_bytes
        return "load"

    def discard(self, slot: int, copy: str) -> None:
        """Drop a failed copy: release its handle (a fresh one is opened on next use)."""
        with self.lock:
            record = self.copies.get(copy)
            handle = record.handle if record is not None else None
            if record is not None:
                record.handle, record.state, record.sleeping_bytes = None, UNLOADED, 0
            if copy in self.resident[slot]:
                self.resident[slot].remove(copy)
        if handle is not None:
            try:
                handle.close()
            except Exception as exc:  # a dead actor cannot be unloaded; it is gone either way
                log.warning("releasing failed expert %s: %s", copy, exc)

    def deactivate(self, copy: str, again: bool = True) -> None:
        """Sleep when the policy, the engine and the host-RAM budget allow; unload otherwise."""
        record = self.copies[copy]
        handle = record.handle
        info = handle.info()
        policy = self.policy.deactivate
        with self.lock:
            asleep = sum(c.sleeping_bytes for c in self.copies.values())
            pinned = sleeping_host_bytes(info.weight_bytes, info.device)  # pinned backups, with their margin
            fits = asleep + pinned <= self.policy.host_ram_bytes
            sleep = sleeps_on_deactivation(policy, info.can_sleep, fits, again)
            if sleep:
                record.sleeping_bytes = pinned
            self.deactivations["sleep" if sleep else "unload"] += 1
        if sleep:
            handle.sleep()
            record.state = SLEEPING
            return
        if policy == "sleep":
            log.warning("expert %s cannot sleep here (engine or host-RAM budget); unloading it", copy)
        elif not again:
            log.info("expert %s is not needed again: unloading it instead of sleeping", copy)
        handle.unload()
        record.state = UNLOADED

    def close(self) -> None:
        """Unload every copy and release its handle."""
        for name, record in self.copies.items():
            try:
                if record.handle is not None:
                    record.handle.close()
            except Exception as exc:  # closing must not hide the run's own outcome
                log.warning("closing expert %s failed: %s", name, exc)
        self.copies.clear()
        self.resident = [[] for _ in range(self.policy.n_slots)]
