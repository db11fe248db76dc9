"""Stage execution on GPU slots: activation, generation, deactivation, and the timeline.

:class:`SlotExecutor` holds the scheduling semantics of DESIGN section 4 for any way of reaching
an expert (an :class:`ExpertHandle`, :mod:`skillmoe_ray.scheduling.handles`): in-process engines
(``LocalExpert``, for tests and benchmarks) or Ray actors (``skillmoe_ray_actors.placement.RayExpert``).

- On a slot one expert generates at a time; an expert is activated once per stage and generates
  its whole group, in one call or (``chunk_requests``) chunk after chunk, each chunk stored as it
  finishes; an expert left resident by the previous stage is reused.
- A slot keeps one resident expert, or, when its GPU memory is known (``gpu_memory_bytes``), as
  many as fit together (memory-aware co-residency, :mod:`skillmoe_ray.scheduling.residency`): an incoming
  expert evicts the residents not needed later first, then the least recently used.
- With several slots, groups run in parallel, one thread per slot. An expert resident or asleep on
  a slot keeps that slot (its home); the others are placed longest work first.
- Deactivation sleeps the expert (weights to host RAM) when its engine can and the host-RAM budget
  allows, and unloads it otherwise; under ``auto``, an expert no later stage needs is unloaded
  (``later``: a sleep would only cost a device-to-host copy and host RAM).
- After a wake, a warm-up and a greedy probe compared with the one recorded at first load catch a
  wake that corrupted weights; a failed probe reloads the expert from disk.
- While a group generates, the next expert of that slot reads its weight files ahead (page cache).
- With ``max_replicas`` > 1 and several slots, a group much larger than its fair share is split
  over replicas of its expert on other slots (:func:`skillmoe_ray.scheduling.grouping.spread`). A replica is a
  copy named ``expert#i``; it is unloaded, never put to sleep, when its slot needs the room.
- Follow-up work (a stage's consumer, such as the aggregator) can stream in: ``followup`` is asked
  for newly ready groups whenever a group finishes, and they run on a free slot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from skillmoe_ray.engines.base import ACTIVE, SLEEPING, UNLOADED, GenOutput
from skillmoe_ray.engines.gpu_memory import sleeping_host_bytes
from skillmoe_ray.errors import ExpertFailed, SkillMoEError
from skillmoe_ray.progress import ProgressFactory, no_progress
from skillmoe_ray.scheduling.fanout import FanOut
from skillmoe_ray.scheduling.grouping import (
    ExpertGroup,
    GroupChunks,
    assign_slots,
    chunked,
    order_groups,
    spread,
)
from skillmoe_ray.scheduling.handles import ExpertHandle
from skillmoe_ray.scheduling.residency import evictions, needed_again, sleeps_on_deactivation, touch

log = logging.getLogger(__name__)

# Called with the group, its outputs and the seconds its generate call took.
GroupDone = Callable[[ExpertGroup, list[GenOutput], float], None]
# Called with a group whose activation or generation raised, and the exception.
GroupFailed = Callable[[ExpertGroup, Exception], None]
# Returns groups that became ready to run (each returned once); [] when none are ready now.
FollowUp = Callable[[], list[ExpertGroup]]


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


class SlotExecutor:
    """Runs each stage's expert groups on ``n_slots`` slots and records what was active when."""

    def __init__(
        self,
        open_expert: Callable[[str, int], ExpertHandle],
        n_slots: int = 1,
        deactivate: str = "auto",
        host_ram_bytes: float = float("inf"),
        progress: ProgressFactory = no_progress,
        t0: float | None = None,
        probe: bool = True,
        gpu_memory_bytes: float | None = None,
        footprint: Callable[[str, int], float] | None = None,
        max_replicas: int = 1,
        replica_min_requests: int = 8,
        max_retries: int = 0,
        chunk_requests: int = 0,
    ):
        self.open_expert = open_expert
        self.n_slots = n_slots
        self.deactivate_policy = deactivate
        self.host_ram_bytes = host_ram_bytes
        self.progress = progress
        self.probe_after_wake = probe
        self.gpu_memory_bytes = gpu_memory_bytes
        # (expert, measured weight bytes or 0) -> device bytes it holds while resident
        self.footprint = footprint or (lambda expert, weight_bytes: float(weight_bytes))
        self.max_replicas = max_replicas
        self.replica_min_requests = replica_min_requests
        self.max_retries = max_retries  # a failed group is run again on a fresh expert this many times
        self.chunk_requests = chunk_requests  # a group generates (and is stored) this many requests at a time; 0: all
        self.next_experts: set[str] = set()
        self.later: set[str] | None = None
        self.t0 = time.perf_counter() if t0 is None else t0
        self.copies: dict[str, ExpertCopy] = {}  # copy name (expert or expert#i) -> its record
        self.slot_resident: list[list[str]] = [[] for _ in range(n_slots)]  # least recently used first
        self.timeline: list[dict] = []
        self.activations: Counter[str] = Counter()
        self.stage_activations: dict[str, Counter[str]] = defaultdict(Counter)
        self.deactivations: Counter[str] = Counter()  # sleep | unload
        self.generate_calls = 0
        self._lock = threading.RLock()
        self.condition = threading.Condition(self._lock)  # notified as groups finish (the fan-out waits on it)

    def now(self) -> float:
        """Seconds since the run started (the timeline's clock)."""
        return time.perf_counter() - self.t0

    def resident_experts(self) -> list[str]:
        """Experts (and replicas, as expert#i) whose weights are on a GPU slot now."""
        return [e for slot in self.slot_resident for e in slot]

    def homes(self) -> dict[str, int]:
        """Experts resident or asleep on a slot: they stay there."""
        return {name: c.slot for name, c in self.copies.items() if c.state in (ACTIVE, SLEEPING)}

    def run_stage(self, stage: str, groups: Sequence[ExpertGroup], next_experts: Iterable[str], on_group_done: GroupDone,
                  on_group_error: GroupFailed | None = None, followup: FollowUp | None = None,
                  later: Iterable[str] | None = None) -> None:
        """Run every group of a stage; ``on_group_done`` is called as each group finishes.

        ``next_experts`` go last in the order (they stay resident into the next stage); ``later``
        are the experts any later stage uses, or None when that is not known yet (every expert
        may then be needed again, so none is unloaded for want of a future use).

        Without ``on_group_error`` a failing group fails the stage (batch runs crash and resume);
        with it, the failure is reported, the expert discarded, and the other groups still run
        (online serving answers the affected requests with an error and stays up).
        """
        self.next_experts = set(next_experts)
        self.later = None if later is None else set(later)
        groups = spread(groups, self.n_slots, self.max_replicas, self.replica_min_requests)
        ordered = order_groups(groups, self.resident_experts(), self.next_experts)
        queues = assign_slots(ordered, self.n_slots, self.homes())
        for slot, queue in enumerate(queues):
            for group in queue:
                self._handle(group.key, slot, group.expert)  # start slow actors now, overlapping other work
        bar = self.progress(sum(len(g.requests) for g in ordered), stage)
        callbacks = (on_group_done, on_group_error)
        try:
            if self.n_slots == 1 and followup is None:
                self.run_queue(stage, 0, queues[0], callbacks, bar)
            else:
                FanOut(self, stage, queues, callbacks, followup, bar).run()
        finally:
            bar.close()

    def run_queue(self, stage: str, slot: int, queue: Sequence[ExpertGroup], callbacks, bar) -> None:
        """Run ``queue``'s groups on ``slot`` in order (each knows the ones after it, for eviction and read-ahead)."""
        for index, group in enumerate(queue):
            self.run_group(stage, slot, group, queue[index + 1 :], callbacks, bar)

    def run_group(self, stage: str, slot: int, group: ExpertGroup, rest: Sequence[ExpertGroup], callbacks, bar) -> None:
        """Activate the group's expert once, read the next one's weights ahead, generate chunk by chunk, record.

        With ``chunk_requests`` the group is generated in chunks of that many requests, each handed to
        ``on_group_done`` (and so stored) as it finishes: progress moves during a long group and a crash
        loses at most the chunk in flight. A group whose expert fails (its actor died, the engine crashed)
        is run again on a fresh expert up to ``max_retries`` times, from the first chunk not yet done; the
        timeline entry of the attempt that succeeds lists the failed ones (``retries``). After that the
        stage's error handler gets the requests not done (serving answers them with an error), or the run
        stops with one error naming the expert, the stage and the cause; every chunk stored before is kept.
        """
        on_group_done, on_group_error = callbacks
        label = group.stage or stage
        work = GroupChunks(group, chunked(group.requests, self.chunk_requests))
        failures: list[dict] = []
        for attempt in range(self.max_retries + 1):
            start = self.now()
            try:
                kind, phases = self._activate(slot, group.key, {g.key for g in rest} | self.next_experts)
                ready = self.now()
                log.info("[%s] expert %s active on slot %d (%s, %.1f s): %d requests%s",
                         label, group.key, slot, kind, ready - start, len(group.requests), work.chunk_note())
                if rest:
                    self._read_ahead(rest[0], slot)
                self._generate_chunks(label, slot, work, on_group_done, bar)
                break
            except Exception as exc:
                self._discard(slot, group.key)
                failures.append({"start": round(start, 3), "end": round(self.now(), 3),
                                 "error": f"{type(exc).__name__}: {exc}"[:300]})
                if attempt < self.max_retries and not isinstance(exc, SkillMoEError):
                    log.warning("[%s] expert %s failed (%s): retrying on a fresh expert (%d of %d)",
                                label, group.expert, exc, attempt + 1, self.max_retries)
                    continue
                self._give_up(label, work.remaining(), exc, attempt + 1, on_group_error)
                return
        with self._lock:
            self.timeline.append({
                "expert": group.expert, "stage": label, "slot": slot,
                "start": round(start, 3), "end": round(self.now(), 3), "kind": kind,
                "activation_seconds": round(ready - start, 3), "phases": phases,
                "requests": len(group.requests), "chunks": len(work.chunks),
                "prompt_tokens": work.prompt_tokens, "output_tokens": work.output_tokens,
                **({"replica": group.replica} if group.replica else {}),
                **({"retries": failures} if failures else {}),
            })
            if kind != "resident":
                self.activations[group.expert] += 1
                self.stage_activations[label][group.expert] += 1

    def _generate_chunks(self, label: str, slot: int, work: GroupChunks, on_group_done: GroupDone, bar) -> None:
        """Generate the chunks not done yet on the active expert; each is stored before the next starts."""
        handle = self._handle(work.group.key, slot, work.group.expert)
        while work.done < len(work.chunks):
            chunk = work.chunks[work.done]
            began = self.now()
            outputs = handle.generate(chunk.requests)
            with self._lock:
                self.generate_calls += 1
                on_group_done(chunk, outputs, self.now() - began)
            work.finish_chunk(outputs)
            if len(work.chunks) > 1:
                log.info("[%s] expert %s: chunk %d/%d stored (%d requests, %.1f s)", label, work.group.key,
                         work.done, len(work.chunks), len(chunk.requests), self.now() - began)
            bar.update(len(chunk.requests))

    @staticmethod
    def _give_up(label: str, group: ExpertGroup, exc: Exception, attempts: int, on_group_error) -> None:
        """After a group's last attempt: the stage's error handler takes it, or the run stops with one error."""
        log.error("[%s] expert %s failed: %s", label, group.expert, exc)
        if on_group_error is not None:
            on_group_error(group, exc)
            return
        if isinstance(exc, SkillMoEError):
            raise exc
        cause = str(exc).splitlines()[0] if str(exc) else ""
        raise ExpertFailed(f"expert {group.expert} failed in stage {label} after {attempts} attempt(s): "
                           f"{type(exc).__name__}: {cause} (finished work is kept; rerun to resume)") from exc

    def _handle(self, copy: str, slot: int, expert: str | None = None) -> ExpertHandle:
        """The handle of ``copy`` (an expert, or its replica expert#i) on ``slot``.

        An unloaded copy moving slots gets a fresh handle there.
        """
        with self._lock:
            record = self.copies.get(copy)
            if record is not None and record.handle is not None and record.slot != slot:
                if record.state != UNLOADED:
                    raise RuntimeError(f"expert {copy} is {record.state} on slot {record.slot}")
                record.handle.close()
                record.handle = None
            if record is None:
                record = self.copies[copy] = ExpertCopy(copy, expert or copy, slot)
            if record.handle is None:
                record.handle, record.slot, record.state = self.open_expert(record.expert, slot), slot, UNLOADED
            return record.handle

    def _expert_of(self, copy: str) -> str:
        return self.copies[copy].expert if copy in self.copies else copy

    def _state(self, copy: str) -> str:
        record = self.copies.get(copy)
        return record.state if record and record.handle else UNLOADED

    def _read_ahead(self, group: ExpertGroup, slot: int) -> None:
        """Warm the page cache with the next group's expert weights if it will load from disk."""
        if self._state(group.key) == UNLOADED:
            try:
                self._handle(group.key, slot, group.expert).prefetch()
            except Exception as exc:  # read-ahead is an optimization; never fail the stage for it
                log.debug("read-ahead of %s failed: %s", group.key, exc)

    def _activate(self, slot: int, copy: str, keep: set[str]) -> tuple[str, dict]:
        """Make ``copy`` (an expert or a replica) resident on ``slot``; returns (load | wake | reload |
        resident, phase seconds).

        ``keep``: copies needed later, evicted only when nothing else frees enough memory.
        """
        residents = self.slot_resident[slot]
        if touch(residents, copy):
            return "resident", {}
        phases: dict[str, float] = {}
        footprints = {e: self.footprint(self._expert_of(e), self.copies[e].weight_bytes if e in self.copies else 0)
                      for e in [*residents, copy]}
        evict = evictions(residents, footprints, copy, self.gpu_memory_bytes, keep)
        if evict:
            t = time.perf_counter()
            for previous in evict:
                again = needed_again(previous, self._expert_of(previous), keep, self.later)
                try:
                    self._deactivate(previous, again)
                    residents.remove(previous)
                except Exception as exc:  # a dead resident (its actor died) leaves the slot; a new one opens on next use
                    log.warning("expert %s could not be deactivated (%s): dropping it from slot %d", previous, exc, slot)
                    self._discard(slot, previous)
            phases["deactivate_previous"] = round(time.perf_counter() - t, 3)
        handle = self._handle(copy, slot)
        record = self.copies[copy]
        if record.state == SLEEPING:
            kind = "wake"
            phases.update(handle.wake())
            record.sleeping_bytes = 0
            if self.probe_after_wake and not self._probe_ok(copy, handle, phases):
                log.error("expert %s failed its probe after waking: reloading it from disk", copy)
                handle.unload()
                phases.update(handle.load())
                kind = "reload"
        else:
            kind = "load"
            phases.update(handle.load())
            if self.probe_after_wake:
                probe = handle.probe()
                record.probe = probe["text"]
                phases["probe"] = probe["seconds"]
            if self.gpu_memory_bytes is not None:
                record.weight_bytes = handle.info().weight_bytes
        record.state = ACTIVE
        residents.append(copy)
        return kind, {k: round(v, 3) for k, v in phases.items()}

    def _probe_ok(self, expert: str, handle: ExpertHandle, phases: dict) -> bool:
        probe = handle.probe()
        phases["warmup_probe"] = probe["seconds"]
        recorded = self.copies[expert].probe
        return recorded is None or probe["text"] == recorded

    def _discard(self, slot: int, expert: str) -> None:
        """Drop a failed expert: release its handle (a fresh one is opened on next use)."""
        with self._lock:
            record = self.copies.get(expert)
            handle = record.handle if record is not None else None
            if record is not None:
                record.handle, record.state, record.sleeping_bytes = None, UNLOADED, 0
            if expert in self.slot_resident[slot]:
                self.slot_resident[slot].remove(expert)
        if handle is not None:
            try:
                handle.close()
            except Exception as exc:  # a dead actor cannot be unloaded; it is gone either way
                log.warning("releasing failed expert %s: %s", expert, exc)

    def _deactivate(self, expert: str, again: bool = True) -> None:
        """Sleep when the policy, the engine and the host-RAM budget allow; unload otherwise."""
        record = self.copies[expert]
        handle = record.handle
        info = handle.info()
        with self._lock:
            asleep = sum(c.sleeping_bytes for c in self.copies.values())
            pinned = sleeping_host_bytes(info.weight_bytes, info.device)  # pinned backups, with their margin
            fits = asleep + pinned <= self.host_ram_bytes
            sleep = sleeps_on_deactivation(self.deactivate_policy, info.can_sleep, fits, again)
            if sleep:
                record.sleeping_bytes = pinned
            self.deactivations["sleep" if sleep else "unload"] += 1
        if sleep:
            handle.sleep()
            record.state = SLEEPING
            return
        if self.deactivate_policy == "sleep":
            log.warning("expert %s cannot sleep here (engine or host-RAM budget); unloading it", expert)
        elif not again:
            log.info("expert %s is not needed again: unloading it instead of sleeping", expert)
        handle.unload()
        record.state = UNLOADED

    def summary(self) -> dict:
        """Activation counts (total and per stage), deactivations by kind, generate calls and the timeline."""
        return {
            "activations": dict(self.activations),
            "activations_per_stage": {s: dict(c) for s, c in self.stage_activations.items()},
            "deactivations": dict(self.deactivations),
            "generate_calls": self.generate_calls,
            "timeline": list(self.timeline),
        }

    def close(self) -> None:
        """Unload every expert and release its handle."""
        for name, record in self.copies.items():
            try:
                if record.handle is not None:
                    record.handle.close()
            except Exception as exc:  # closing must not hide the run's own outcome
                log.warning("closing expert %s failed: %s", name, exc)
        self.copies.clear()
        self.slot_resident = [[] for _ in range(self.n_slots)]
