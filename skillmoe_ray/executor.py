"""Stage execution on GPU slots: activation, generation, deactivation, and the timeline.

:class:`SlotExecutor` holds the scheduling semantics of DESIGN section 4 for any way of reaching
an expert: in-process engines (:class:`LocalExpert`, for tests and debugging) or Ray actors (the
``actors`` package wraps each ExpertActor in the same :class:`ExpertHandle` shape). On a slot at
most one expert is active at a time; an expert is activated once per stage and generates its whole
group in one call; an expert left resident by the previous stage is reused without activation.
Deactivation sleeps the expert (weights to host RAM) when its engine can and the host-RAM budget
allows, and unloads it otherwise.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from skillmoe_ray.engines.base import ACTIVE, SLEEPING, UNLOADED, Engine, EngineInfo, GenOutput, GenRequest
from skillmoe_ray.plan import ExpertGroup, assign_slots, order_groups
from skillmoe_ray.progress import ProgressFactory, no_progress

log = logging.getLogger(__name__)

# Called with the group, its outputs and the seconds its generate call took.
GroupDone = Callable[[ExpertGroup, list[GenOutput], float], None]
# Called with a group whose activation or generation raised, and the exception.
GroupFailed = Callable[[ExpertGroup, Exception], None]


class ExpertHandle(Protocol):
    """How the executor reaches one expert's engine (in-process or a Ray actor)."""

    def load(self) -> dict: ...
    def sleep(self) -> dict: ...
    def wake(self) -> dict: ...
    def unload(self) -> dict: ...
    def generate(self, requests: list[GenRequest]) -> list[GenOutput]: ...
    def info(self) -> EngineInfo: ...
    def close(self) -> None: ...


class LocalExpert:
    """An engine driven in the calling process."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def load(self) -> dict:
        return self.engine.load()

    def sleep(self) -> dict:
        return self.engine.sleep()

    def wake(self) -> dict:
        return self.engine.wake()

    def unload(self) -> dict:
        return self.engine.unload()

    def generate(self, requests: list[GenRequest]) -> list[GenOutput]:
        return self.engine.generate(requests)

    def info(self) -> EngineInfo:
        return self.engine.info

    def close(self) -> None:
        self.engine.unload()


class SlotExecutor:
    """Runs each stage's expert groups on ``n_slots`` slots and records what was active when."""

    def __init__(
        self,
        open_expert: Callable[[str], ExpertHandle],
        n_slots: int = 1,
        deactivate: str = "auto",
        host_ram_bytes: float = float("inf"),
        progress: ProgressFactory = no_progress,
        t0: float | None = None,
    ):
        self.open_expert = open_expert
        self.n_slots = n_slots
        self.deactivate_policy = deactivate
        self.host_ram_bytes = host_ram_bytes
        self.progress = progress
        self.t0 = time.perf_counter() if t0 is None else t0
        self.handles: dict[str, ExpertHandle] = {}
        self.state: dict[str, str] = {}
        self.sleeping_bytes: dict[str, int] = {}
        self.slot_active: list[str | None] = [None] * n_slots
        self.timeline: list[dict] = []
        self.activations: Counter[str] = Counter()
        self.stage_activations: dict[str, Counter[str]] = defaultdict(Counter)
        self.generate_calls = 0
        self._lock = threading.Lock()

    def now(self) -> float:
        """Seconds since the run started (the timeline's clock)."""
        return time.perf_counter() - self.t0

    def prepare(self, experts: Iterable[str]) -> None:
        """Open handles early so that slow start-up (process, imports) overlaps other work."""
        for expert in experts:
            self._handle(expert)

    def run_stage(
        self,
        stage: str,
        groups: Sequence[ExpertGroup],
        next_experts: Iterable[str],
        on_group_done: GroupDone,
        on_group_error: GroupFailed | None = None,
    ) -> None:
        """Run every group of a stage; ``on_group_done`` is called as each group finishes.

        Without ``on_group_error`` a failing group fails the stage (batch runs crash and resume);
        with it, the failure is reported, the expert discarded, and the other groups still run
        (online serving answers the affected requests with an error and stays up).
        """
        resident = [e for e in self.slot_active if e is not None]
        ordered = order_groups(groups, resident, next_experts)
        self.prepare(g.expert for g in ordered)
        queues = assign_slots(ordered, self.n_slots)
        bar = self.progress(sum(len(g.requests) for g in ordered), f"{stage}")
        try:
            if self.n_slots == 1:
                self._run_queue(stage, 0, queues[0], on_group_done, on_group_error, bar)
            else:
                threads = [
                    threading.Thread(target=self._run_queue, args=(stage, i, q, on_group_done, on_group_error, bar))
                    for i, q in enumerate(queues)
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        finally:
            bar.close()

    def _run_queue(self, stage: str, slot: int, queue: list[ExpertGroup], on_group_done: GroupDone,
                   on_group_error: GroupFailed | None, bar) -> None:
        for group in queue:
            start = self.now()
            try:
                kind = self._activate(slot, group.expert)
                ready = self.now()
                log.info(
                    "[%s] expert %s active on slot %d (%s, %.1f s): %d requests",
                    stage, group.expert, slot, kind, ready - start, len(group.requests),
                )
                outputs = self._handle(group.expert).generate(group.requests)
            except Exception as exc:
                if on_group_error is None:
                    raise
                log.error("[%s] expert %s failed: %s", stage, group.expert, exc)
                self._discard(slot, group.expert)
                on_group_error(group, exc)
                continue
            end = self.now()
            with self._lock:
                self.generate_calls += 1
                on_group_done(group, outputs, end - ready)
                self.timeline.append(
                    {
                        "expert": group.expert,
                        "stage": stage,
                        "slot": slot,
                        "start": round(start, 3),
                        "end": round(end, 3),
                        "kind": kind,
                        "activation_seconds": round(ready - start, 3),
                        "requests": len(group.requests),
                        "output_tokens": sum(o.output_tokens for o in outputs),
                    }
                )
                if kind != "resident":
                    self.activations[group.expert] += 1
                    self.stage_activations[stage][group.expert] += 1
            bar.update(len(group.requests))

    def _handle(self, expert: str) -> ExpertHandle:
        with self._lock:
            if expert not in self.handles:
                self.handles[expert] = self.open_expert(expert)
                self.state[expert] = UNLOADED
            return self.handles[expert]

    def _activate(self, slot: int, expert: str) -> str:
        """Make ``expert`` the active expert of ``slot``; returns load, wake or resident."""
        current = self.slot_active[slot]
        if current == expert:
            return "resident"
        if current is not None:
            self._deactivate(current)
            self.slot_active[slot] = None
        handle = self._handle(expert)
        if self.state[expert] == SLEEPING:
            handle.wake()
            self.sleeping_bytes.pop(expert, None)
            kind = "wake"
        else:
            handle.load()
            kind = "load"
        self.state[expert] = ACTIVE
        self.slot_active[slot] = expert
        return kind

    def _discard(self, slot: int, expert: str) -> None:
        """Drop a failed expert: release its handle (a fresh one is opened on next use)."""
        with self._lock:
            handle = self.handles.pop(expert, None)
            self.state.pop(expert, None)
            self.sleeping_bytes.pop(expert, None)
        if self.slot_active[slot] == expert:
            self.slot_active[slot] = None
        if handle is not None:
            try:
                handle.close()
            except Exception as exc:  # a dead actor cannot be unloaded; it is gone either way
                log.warning("releasing failed expert %s: %s", expert, exc)

    def _deactivate(self, expert: str) -> None:
        """Sleep when the engine can and the host-RAM budget allows; unload otherwise."""
        handle = self.handles[expert]
        info = handle.info()
        fits = sum(self.sleeping_bytes.values()) + info.weight_bytes <= self.host_ram_bytes
        if self.deactivate_policy in ("auto", "sleep") and info.can_sleep and fits:
            handle.sleep()
            self.state[expert] = SLEEPING
            self.sleeping_bytes[expert] = info.weight_bytes
            return
        if self.deactivate_policy == "sleep":
            log.warning("expert %s cannot sleep here (engine or host-RAM budget); unloading it", expert)
        handle.unload()
        self.state[expert] = UNLOADED

    def summary(self) -> dict:
        """Activation counts (total and per stage), generate calls and the timeline."""
        return {
            "activations": dict(self.activations),
            "activations_per_stage": {s: dict(c) for s, c in self.stage_activations.items()},
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
        self.slot_active = [None] * self.n_slots
