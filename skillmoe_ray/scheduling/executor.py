"""Stage execution on GPU slots: queues, chunks, retries, fan-out, and the timeline.

:class:`SlotExecutor` holds the scheduling semantics of DESIGN section 4 for any way of reaching
an expert (an :class:`ExpertHandle`, :mod:`skillmoe_ray.scheduling.handles`): in-process engines
(``LocalExpert``, for tests and benchmarks) or Ray actors (``skillmoe_ray_actors.placement.RayExpert``).
It drives stages; the experts' state on the slots (copies, residents, activation, deactivation, eviction,
probes) is :class:`~skillmoe_ray.scheduling.slots.SlotState`'s, and every setting is one
:class:`~skillmoe_ray.scheduling.policy.ExecutionPolicy`
(:func:`~skillmoe_ray.scheduling.policy.execution_policy` builds a run's from its config).

- On a slot one expert generates at a time; an expert is activated once per stage and generates
  its whole group, in one call or (``chunk_requests``) chunk after chunk, each chunk stored as it
  finishes; an expert left resident by the previous stage is reused.
- A slot keeps as many experts resident as fit its memory budget together (``gpu_memory_bytes``: memory-aware
  co-residency, :mod:`skillmoe_ray.scheduling.residency`), or one (``scheduler.residency=single``): an
  incoming expert evicts the residents not needed later first, then the least recently used.
- With several slots, groups run in parallel, one thread per slot. An expert resident or asleep on
  a slot keeps that slot (its home); the others are placed longest work first.
- Deactivation sleeps the expert (weights to host RAM) when its engine can and the host-RAM budget
  allows, and unloads it otherwise; under ``auto``, an expert no later stage needs is unloaded
  (``later``: a sleep would only cost a device-to-host copy and host RAM).
- After a wake, a warm-up and a greedy probe compared with the one recorded at first load catch a
  wake that corrupted weights; a failed probe reloads the expert from disk.
- While a group generates, the next cold expert of that slot loads ahead where the slot's memory budget has
  room for it beside the one generating (:mod:`skillmoe_ray.scheduling.load_ahead`); otherwise the next
  expert reads its weight files ahead (page cache).
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
from functools import partial

from skillmoe_ray.engines.base import SLEEPING, GenOutput
from skillmoe_ray.errors import (
    ExpertFailed,
    StoreFailed,
    is_deterministic,
    is_past_deadline,
    one_line,
    retry_helps,
)
from skillmoe_ray.progress import Bar, ProgressFactory, no_progress
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
from skillmoe_ray.scheduling.isolation import generate_isolating
from skillmoe_ray.scheduling.load_ahead import LoadAhead
from skillmoe_ray.scheduling.policy import ExecutionPolicy
from skillmoe_ray.scheduling.slots import Activation, SlotState
from skillmoe_ray.scheduling.timeline import ExecutorSummary, FailedAttempt, TimelineEntry

log = logging.getLogger(__name__)
# A chunk-stored line at most this often per group: a fast stage does not print one line per chunk
CHUNK_LINE_EVERY_S = 10.0

# Called with the group, its outputs and the seconds its generate call took.
GroupDone = Callable[[ExpertGroup, list[GenOutput], float], None]
# Called with a group whose activation or generation raised, and the exception.
GroupFailed = Callable[[ExpertGroup, Exception], None]
# Returns groups that became ready to run (each returned once); [] when none are ready now.
FollowUp = Callable[[], list[ExpertGroup]]


@dataclass(frozen=True)
class StageRun:
    """One stage in progress: its name, where each group's outputs (or failure) go, and its progress bar."""

    stage: str
    on_done: GroupDone
    on_error: GroupFailed | None
    bar: Bar


class SlotExecutor:
    """Runs each stage's expert groups on the policy's slots and records what was active when."""

    def __init__(self, open_expert: Callable[[str, int], ExpertHandle], policy: ExecutionPolicy | None = None,
                 progress: ProgressFactory = no_progress, t0: float | None = None):
        self.policy = policy or ExecutionPolicy()  # the defaults: one slot, one resident expert, no retries
        self.slots = SlotState(open_expert, self.policy)
        self.ahead = LoadAhead(self.slots, self.policy.load_ahead)
        self.progress = progress
        self.next_experts: set[str] = set()
        self.later: set[str] | None = None
        self.t0 = time.perf_counter() if t0 is None else t0
        self.timeline: list[TimelineEntry] = []
        self.activations: Counter[str] = Counter()
        self.stage_activations: dict[str, Counter[str]] = defaultdict(Counter)
        self.generate_calls = 0
        self.condition = threading.Condition(self.slots.lock)  # notified as groups finish (the fan-out waits)

    def now(self) -> float:
        """Seconds since the run started (the timeline's clock)."""
        return time.perf_counter() - self.t0

    def resident_experts(self) -> list[str]:
        """Experts (and replicas, as expert#i) whose weights are on a GPU slot now."""
        return self.slots.resident_experts()

    def warm(self, models: Sequence[str]) -> list[str]:
        """Load ``models``, in order, while each fits beside those already resident (serving's warm-up before
        it reports ready); none is evicted for another. Every other model is started without its weights
        (:meth:`start`). Returns the models resident afterwards."""
        later = []
        for model in models:
            slot = self.slots.room_for(model)
            if model in self.resident_experts():
                continue
            if slot is None:
                later.append(model)
                continue
            try:
                activation = self.slots.activate(slot, model, set(self.resident_experts()), None)
            except Exception as exc:  # a model that cannot load now loads (or fails) on first use
                log.warning("warm-up: %s did not load (%s); it loads on first use", model, exc)
                self.slots.discard(slot, model)
                continue
            self.activations[model] += activation.kind != "resident"
            log.info("warm-up: %s %s on slot %d", model, activation.kind, slot)
        self.start(later)
        return self.resident_experts()

    def start(self, models: Sequence[str]) -> None:
        """Open the handles of ``models`` that have none yet, without loading their weights, and wait until
        each is up: an expert actor's process starts and imports its engine (seconds to a minute on a
        small CPU), so the model's first use pays a weight load only. Slots are dealt round-robin; a copy
        that later runs on another slot gets a fresh handle there. A model that cannot start now starts
        (or fails) on first use."""
        opened = []
        for index, model in enumerate(m for m in models if m not in self.slots.copies):
            slot = index % self.policy.n_slots
            try:
                opened.append((model, slot, self.slots.handle(model, slot)))
            except Exception as exc:  # the first use tries again and reports its own error
                log.warning("warm-up: %s did not start (%s); it starts on first use", model, exc)
        for model, slot, handle in opened:
            try:
                handle.info()  # answers once the handle's process is up (a Ray actor: its constructor ran)
                log.info("warm-up: %s started on slot %d; its weights load on first use", model, slot)
            except Exception as exc:
                log.warning("warm-up: %s did not start (%s); it starts on first use", model, exc)
                self.slots.discard(slot, model)

    def run_stage(self, stage: str, groups: Sequence[ExpertGroup], next_experts: Iterable[str],
                  on_group_done: GroupDone, on_group_error: GroupFailed | None = None,
                  followup: FollowUp | None = None, later: Iterable[str] | None = None) -> None:
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
        n_slots = self.policy.n_slots
        groups = spread(groups, n_slots, self.policy.max_replicas, self.policy.replica_min_requests)
        ordered = order_groups(groups, self.resident_experts(), self.next_experts, self.slots.rank)
        queues = assign_slots(ordered, n_slots, self.slots.homes())
        for slot, queue in enumerate(queues):
            for group in queue:
                self.slots.handle(group.key, slot, group.expert)  # start slow actors now, meanwhile
        bar = self.progress(sum(len(g.requests) for g in ordered), stage)
        run = StageRun(stage, on_group_done, on_group_error, bar)
        try:
            if n_slots == 1 and followup is None:
                self.run_queue(run, 0, queues[0])
            else:
                homes = self.slots.homes()
                FanOut(queues, partial(self.run_group, run), self.condition, homes, followup).run()
        finally:
            # a copy loaded ahead for a group that never ran (the stage failed first) still counts
            for copy, activation in self.ahead.settle_all().items():
                self._count(stage, self.slots.expert_of(copy), activation)
            run.bar.close()

    def run_queue(self, run: StageRun, slot: int, queue: Sequence[ExpertGroup]) -> None:
        """Run ``queue``'s groups on ``slot`` in order (each knows those after it: eviction, read-ahead)."""
        for index, group in enumerate(queue):
            self.run_group(run, slot, group, queue[index + 1 :])

    def run_group(self, run: StageRun, slot: int, group: ExpertGroup, rest: Sequence[ExpertGroup]) -> None:
        """Activate the group's expert once, read the next one's weights ahead, generate by chunks, record.

        With ``chunk_requests`` the group is generated in chunks of that many requests, each handed to
        ``on_done`` (and so stored) as it finishes: progress moves during a long group and a crash
        loses at most the chunk in flight. A group whose expert fails (its actor died, the engine crashed)
        is run again on a fresh expert up to ``max_retries`` times, from the first chunk not yet done; the
        timeline entry of the attempt that succeeds lists the failed ones (``retries``). After that the
        stage's error handler gets the requests not done (serving answers them with an error), or the run
        stops with one error naming the expert, the stage and the cause; every chunk stored before is kept.
        """
        label = group.stage or run.stage
        work = GroupChunks(group, chunked(group.requests, self.policy.chunk_requests))
        failures: list[FailedAttempt] = []
        for attempt in range(self.policy.max_retries + 1):
            start = self.now()
            try:
                activation, ready = self._attempt(label, run, slot, work, rest, start)
                break
            except StoreFailed as failed:  # the expert is fine and stays loaded; storage is not retried
                if run.on_error is None:
                    raise failed.error from None
                self._give_up(label, work.remaining(), failed.error, attempt + 1, run.on_error)
                return
            except Exception as exc:
                self.slots.discard(slot, group.key)
                failures.append(FailedAttempt(round(start, 3), round(self.now(), 3), one_line(exc)[:300]))
                if attempt < self.policy.max_retries and retry_helps(exc):
                    log.warning("[%s] expert %s failed (%s): retrying on a fresh expert (%d of %d)",
                                label, group.expert, one_line(exc), attempt + 1, self.policy.max_retries)
                    continue
                self._give_up(label, work.remaining(), exc, attempt + 1, run.on_error)
                return
        self._record(label, slot, work, (start, ready), activation, tuple(failures))

    def _attempt(self, label: str, run: StageRun, slot: int, work: GroupChunks, rest: Sequence[ExpertGroup],
                 start: float) -> tuple[Activation, float]:
        """One try at a group, begun at ``start``: activate its expert, read the next one ahead, generate the
        chunks not done. Returns the activation and when it was done."""
        group = work.group
        keep = {g.key for g in rest} | self.next_experts
        if group.key not in self.slots.resident[slot]:
            self.ahead.settle(slot)  # the slot's records change only once its load-ahead (this one?) is in
        if group.key not in self.slots.resident[slot]:  # loading can take a minute: say so before it starts
            verb = "waking" if self.slots.state(group.key) == SLEEPING else "loading"
            log.info("[%s] expert %s: %s on slot %d", label, group.key, verb, slot)
        activation = self.slots.activate(slot, group.key, keep, self.later)
        if activation.kind == "resident":
            activation = self.ahead.taken(group.key) or activation
        ready = self.now()
        log.info("[%s] expert %s active on slot %d (%s, %.1f s): %d requests%s", label, group.key, slot,
                 activation.kind, ready - start, len(group.requests), work.chunk_note())
        if rest and self.ahead.start(slot, group.key, rest, keep, self.later) is None:
            self.slots.read_ahead(rest[0].key, slot, rest[0].expert)
        self._generate_chunks(label, slot, work, run)
        return activation, ready

    def _record(self, label: str, slot: int, work: GroupChunks, span: tuple[float, float],
                activation: Activation, failures: tuple[FailedAttempt, ...]) -> None:
        """Add the group's timeline entry (``span``: its last attempt's start and its expert's ready time)."""
        group = work.group
        start, ready = span
        with self.slots.lock:
            self.timeline.append(TimelineEntry(
                expert=group.expert, stage=label, slot=slot, start=round(start, 3), end=round(self.now(), 3),
                kind=activation.kind, activation_seconds=round(ready - start, 3), phases=activation.phases,
                requests=len(group.requests), chunks=len(work.chunks),
                prompt_tokens=work.prompt_tokens, output_tokens=work.output_tokens,
                replica=group.replica, retries=failures,
            ))
        self._count(label, group.expert, activation)

    def _count(self, label: str, expert: str, activation: Activation) -> None:
        """Count an activation that loaded or woke ``expert`` (a resident one costs nothing)."""
        with self.slots.lock:
            if activation.kind != "resident":
                self.activations[expert] += 1
                self.stage_activations[label][expert] += 1

    def _generate_chunks(self, label: str, slot: int, work: GroupChunks, run: StageRun) -> None:
        """Generate the chunks not done yet on the active expert; each is stored before the next starts."""
        handle = self.slots.handle(work.group.key, slot, work.group.expert)
        last_line = self.now()
        while work.done < len(work.chunks):
            chunk = work.chunks[work.done]
            began = self.now()
            answered = generate_isolating(self._counted_generate(handle), chunk, run.on_error, run.stage)
            outputs = [out for _, outs in answered for out in outs]
            with self.slots.lock:
                for part, outs in answered:
                    try:
                        run.on_done(part, outs, (self.now() - began) * len(outs) / max(len(outputs), 1))
                    except Exception as exc:
                        raise StoreFailed(exc) from exc
            work.finish_chunk(outputs)
            if len(work.chunks) > 1 and self.now() - last_line >= CHUNK_LINE_EVERY_S:  # not per fast chunk
                last_line = self.now()
                log.info("[%s] expert %s: chunk %d/%d stored (%d requests, %.1f s)", label, work.group.key,
                         work.done, len(work.chunks), len(chunk.requests), self.now() - began)
            run.bar.update(len(chunk.requests))

    def _counted_generate(self, handle: ExpertHandle) -> Callable[[list], list[GenOutput]]:
        """``handle.generate``, counting each call (the summary's generate_calls)."""
        def generate(requests: list) -> list[GenOutput]:
            with self.slots.lock:
                self.generate_calls += 1
            return handle.generate(requests)
        return generate

    @staticmethod
    def _give_up(label: str, group: ExpertGroup, exc: Exception, attempts: int,
                 on_error: GroupFailed | None) -> None:
        """After the last attempt: the stage's error handler takes the group, or the run stops (one error)."""
        log.error("[%s] expert %s failed: %s", label, group.expert, one_line(exc))
        if on_error is not None:
            on_error(group, exc)
            return
        why = ("(not retried: the same input fails again)" if is_deterministic(exc)
               else "(not retried: past its requests' deadline)" if is_past_deadline(exc)
               else f"after {attempts} attempt(s)")
        raise ExpertFailed(
            f"expert {group.expert} failed in stage {label} {why}: {one_line(exc)} "
            f"(finished work is kept in the cache; rerun to resume)"
        ) from exc

    def summary(self) -> ExecutorSummary:
        """Activation counts (total and per stage), deactivations by kind, generate calls and the timeline."""
        with self.slots.lock:
            return ExecutorSummary(
                activations=dict(self.activations),
                activations_per_stage={s: dict(c) for s, c in self.stage_activations.items()},
                deactivations=dict(self.slots.deactivations),
                generate_calls=self.generate_calls,
                timeline=tuple(self.timeline),
                loads_ahead=self.ahead.started,
            )

    def close(self) -> None:
        """Unload every expert and release its handle."""
        self.ahead.close()
        self.slots.close()
