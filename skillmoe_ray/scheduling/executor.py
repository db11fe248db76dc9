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
- After a wake, a one-token warm-up and a short greedy probe compared with the probe recorded at
  first load catch a wake that corrupted weights; a failed probe reloads the expert from disk.
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

from skillmoe_ray.engines.base import ACTIVE, SLEEPING, UNLOADED, GenOutput
from skillmoe_ray.errors import ExpertFailed, SkillMoEError
from skillmoe_ray.progress import ProgressFactory, no_progress
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
        self.expert_of: dict[str, str] = {}  # copy (expert or expert#i) -> expert
        self.weight_bytes: dict[str, int] = {}
        self.next_experts: set[str] = set()
        self.later: set[str] | None = None
        self.t0 = time.perf_counter() if t0 is None else t0
        self.handles: dict[str, ExpertHandle] = {}
        self.handle_slot: dict[str, int] = {}
        self.state: dict[str, str] = {}
        self.sleeping_bytes: dict[str, int] = {}
        self.probes: dict[str, str] = {}
        self.slot_resident: list[list[str]] = [[] for _ in range(n_slots)]  # least recently used first
        self.timeline: list[dict] = []
        self.activations: Counter[str] = Counter()
        self.stage_activations: dict[str, Counter[str]] = defaultdict(Counter)
        self.deactivations: Counter[str] = Counter()  # sleep | unload
        self.generate_calls = 0
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)

    def now(self) -> float:
        """Seconds since the run started (the timeline's clock)."""
        return time.perf_counter() - self.t0

    def resident_experts(self) -> list[str]:
        """Experts (and replicas, as expert#i) whose weights are on a GPU slot now."""
        return [e for slot in self.slot_resident for e in slot]

    def homes(self) -> dict[str, int]:
        """Experts resident or asleep on a slot: they stay there."""
        return {e: self.handle_slot[e] for e, s in self.state.items() if s in (ACTIVE, SLEEPING)}

    def run_stage(
        self,
        stage: str,
        groups: Sequence[ExpertGroup],
        next_experts: Iterable[str],
        on_group_done: GroupDone,
        on_group_error: GroupFailed | None = None,
        followup: FollowUp | None = None,
        later: Iterable[str] | None = None,
    ) -> None:
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
                self._run_queue(stage, 0, queues[0], callbacks, bar)
            else:
                _FanOut(self, stage, queues, callbacks, followup, bar).run()
        finally:
            bar.close()

    def _run_queue(self, stage: str, slot: int, queue: Sequence[ExpertGroup], callbacks, bar) -> None:
        for index, group in enumerate(queue):
            self._run_group(stage, slot, group, queue[index + 1 :], callbacks, bar)

    def _run_group(self, stage: str, slot: int, group: ExpertGroup, rest: Sequence[ExpertGroup], callbacks, bar) -> None:
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
            if copy in self.handles and self.handle_slot[copy] != slot:
                if self.state[copy] != UNLOADED:
                    raise RuntimeError(f"expert {copy} is {self.state[copy]} on slot {self.handle_slot[copy]}")
                self.handles.pop(copy).close()
            if copy not in self.handles:
                self.expert_of[copy] = expert or self.expert_of.get(copy, copy)
                self.handles[copy] = self.open_expert(self.expert_of[copy], slot)
                self.handle_slot[copy] = slot
                self.state[copy] = UNLOADED
            return self.handles[copy]

    def _read_ahead(self, group: ExpertGroup, slot: int) -> None:
        """Warm the page cache with the next group's expert weights if it will load from disk."""
        if self.state.get(group.key, UNLOADED) == UNLOADED:
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
        footprints = {e: self.footprint(self.expert_of.get(e, e), self.weight_bytes.get(e, 0))
                      for e in [*residents, copy]}
        evict = evictions(residents, footprints, copy, self.gpu_memory_bytes, keep)
        if evict:
            t = time.perf_counter()
            for previous in evict:
                again = needed_again(previous, self.expert_of.get(previous, previous), keep, self.later)
                try:
                    self._deactivate(previous, again)
                    residents.remove(previous)
                except Exception as exc:  # a dead resident (its actor died) leaves the slot; a new one opens on next use
                    log.warning("expert %s could not be deactivated (%s): dropping it from slot %d", previous, exc, slot)
                    self._discard(slot, previous)
            phases["deactivate_previous"] = round(time.perf_counter() - t, 3)
        handle = self._handle(copy, slot)
        if self.state[copy] == SLEEPING:
            kind = "wake"
            phases.update(handle.wake())
            self.sleeping_bytes.pop(copy, None)
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
                self.probes[copy] = probe["text"]
                phases["probe"] = probe["seconds"]
            if self.gpu_memory_bytes is not None:
                self.weight_bytes[copy] = handle.info().weight_bytes
        self.state[copy] = ACTIVE
        residents.append(copy)
        return kind, {k: round(v, 3) for k, v in phases.items()}

    def _probe_ok(self, expert: str, handle: ExpertHandle, phases: dict) -> bool:
        probe = handle.probe()
        phases["warmup_probe"] = probe["seconds"]
        return expert not in self.probes or probe["text"] == self.probes[expert]

    def _discard(self, slot: int, expert: str) -> None:
        """Drop a failed expert: release its handle (a fresh one is opened on next use)."""
        with self._lock:
            handle = self.handles.pop(expert, None)
            self.state.pop(expert, None)
            self.sleeping_bytes.pop(expert, None)
            if expert in self.slot_resident[slot]:
                self.slot_resident[slot].remove(expert)
        if handle is not None:
            try:
                handle.close()
            except Exception as exc:  # a dead actor cannot be unloaded; it is gone either way
                log.warning("releasing failed expert %s: %s", expert, exc)

    def _deactivate(self, expert: str, again: bool = True) -> None:
        """Sleep when the policy, the engine and the host-RAM budget allow; unload otherwise."""
        handle = self.handles[expert]
        info = handle.info()
        with self._lock:
            fits = sum(self.sleeping_bytes.values()) + info.weight_bytes <= self.host_ram_bytes
            sleep = sleeps_on_deactivation(self.deactivate_policy, info.can_sleep, fits, again)
            if sleep:
                self.sleeping_bytes[expert] = info.weight_bytes
            self.deactivations["sleep" if sleep else "unload"] += 1
        if sleep:
            handle.sleep()
            self.state[expert] = SLEEPING
            return
        if self.deactivate_policy == "sleep":
            log.warning("expert %s cannot sleep here (engine or host-RAM budget); unloading it", expert)
        elif not again:
            log.info("expert %s is not needed again: unloading it instead of sleeping", expert)
        handle.unload()
        self.state[expert] = UNLOADED

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
        for expert, handle in self.handles.items():
            try:
                handle.close()
            except Exception as exc:  # closing must not hide the run's own outcome
                log.warning("closing expert %s failed: %s", expert, exc)
        self.handles.clear()
        self.state.clear()
        self.slot_resident = [[] for _ in range(self.n_slots)]


class _FanOut:
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
            self.ex._run_queue(self.stage, slot, self.queues[slot], self.callbacks, self.bar)
        except BaseException as exc:
            self.errors.append(exc)
        with self.ex._cond:
            self.finished += 1
            self.ex._cond.notify_all()
        if self.followup is not None and not self.errors:
            self._follow_ups(slot)

    def _follow_ups(self, slot: int) -> None:
        cond = self.ex._cond
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
                self.ex._run_group(self.stage, slot, group, (), self.callbacks, self.bar)
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
