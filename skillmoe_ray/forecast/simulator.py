"""Cost model and schedule simulator: predicted makespan for 1..N GPUs before renting them.

DESIGN section 4. The simulator replays the executor's own decisions (group order from
:func:`order_groups`, slot placement from :func:`assign_slots`, sleep-or-unload on deactivation)
over a workload, charging each activation and each group's generation with per-expert figures:
measured ones (``<cache_dir>/measurements.json``, written after every real run) where they exist,
otherwise the configured cost model (load = engine start + weights from disk; wake = weights over
the host-to-device link; generation = output tokens / decode rate + prompt tokens / prefill rate).

A workload is a list of stages, each a list of :class:`Work` (one expert's share of the stage). It
comes from the configuration (:func:`estimate_stages`, for planning a run not done yet) or from a
finished run's timeline (:func:`stages_from_run`, to check the model against what happened).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from skillmoe_ray.config import CostConfig, RunConfig
from skillmoe_ray.engines import engine_entry
from skillmoe_ray.engines.gpu_memory import sleeping_host_bytes
from skillmoe_ray.scheduling.grouping import assign_slots, order_groups, replica_key, spread
from skillmoe_ray.scheduling.residency import (
    evictions,
    footprints_from_config,
    needed_again,
    sleeps_on_deactivation,
    touch,
)

GB = 1e9


@dataclass(frozen=True)
class Work:
    """One expert's share of a stage: what the simulator needs of an ExpertGroup."""

    expert: str
    requests: int
    prompt_tokens: int
    output_tokens: int
    replica: int = 0

    @property
    def est_tokens(self) -> int:
        """Same ordering key as ExpertGroup.est_tokens: prompt plus output tokens."""
        return self.prompt_tokens + self.output_tokens

    @property
    def n_requests(self) -> int:
        return self.requests

    @property
    def key(self) -> str:
        return replica_key(self.expert, self.replica)

    def split(self, parts: int) -> list[Work]:
        """Even shards, as ExpertGroup.split deals requests out."""
        return [replace(self, requests=len(range(i, self.requests, parts)),
                        prompt_tokens=self.prompt_tokens // parts,
                        output_tokens=self.output_tokens // parts, replica=i) for i in range(parts)]


@dataclass(frozen=True)
class StageWork:
    """A stage's expert work, the experts the next stage needs, and its driver-side seconds.

    ``later``: the experts any later stage uses, when the run knows them while this stage runs
    (test-time phases, after recruitment); None before that, as in the executor.
    """

    name: str
    works: tuple[Work, ...] = ()
    next_experts: tuple[str, ...] = ()
    cpu_seconds: float = 0.0
    later: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ExpertFigures:
    """Seconds per activation (load from disk; wake from host RAM, if possible) and rates."""

    load_s: float
    wake_s: float | None
    tokens_per_s: float
    prefill_tokens_per_s: float = float("inf")
    weight_bytes: float = 0.0
    footprint_bytes: float = 0.0  # device memory while resident (co-residency)
    sleep_s: float = 0.0  # putting it to sleep (weights over the device-to-host link)
    unload_s: float = 0.0
    compile_s: float = 0.0  # added to its first load only

    def generate_s(self, work: Work) -> float:
        return work.output_tokens / self.tokens_per_s + work.prompt_tokens / self.prefill_tokens_per_s


@dataclass
class Simulation:
    """The predicted timeline and makespan."""

    n_slots: int
    makespan: float
    entries: list[dict] = field(default_factory=list)

    @property
    def activations(self) -> int:
        return sum(1 for e in self.entries if e["kind"] != "resident")


def modeled_figures(cost: CostConfig, params_b: float | None, can_sleep: bool,
                    compiles: bool = False) -> ExpertFigures:
    """Figures from the cost model alone, for a model of ``params_b`` billion parameters; ``compiles``: its
    engine compiles on a first start (vLLM without enforce_eager)."""
    weights = (params_b or cost.default_params_b) * 1e9 * cost.bytes_per_param
    return ExpertFigures(
        load_s=cost.engine_start_s + weights / (cost.disk_gb_per_s * GB) + cost.warmup_s,
        wake_s=weights / (cost.host_to_device_gb_per_s * GB) + cost.warmup_s if can_sleep else None,
        tokens_per_s=cost.tokens_per_s,
        prefill_tokens_per_s=cost.prefill_tokens_per_s,
        weight_bytes=weights,
        sleep_s=weights / (cost.device_to_host_gb_per_s * GB) if can_sleep else 0.0,
        unload_s=cost.unload_s,
        compile_s=cost.compile_s if compiles else 0.0,
    )


def expert_figures(cfg: RunConfig, measured: Mapping[str, dict], fingerprints: Mapping[str, str],
                   can_sleep: bool) -> dict[str, ExpertFigures]:
    """Per-model figures: measured values (by model fingerprint) override the modeled ones.

    A measured activation already holds the deactivation of the expert before it and, averaged, a first
    start's compile: a measured model is charged neither again.
    """
    out = {}
    footprint_of = footprints_from_config(cfg, planning=True)
    compiles = cfg.engine.name == "vllm" and not cfg.engine.options.get("enforce_eager", False)
    for name, spec in cfg.pool.items():
        base = modeled_figures(cfg.scheduler.cost, spec.params_b, can_sleep, compiles)
        m = measured.get(fingerprints[name], {})
        if engine_entry(cfg.engine.name).remote:  # served elsewhere: an activation loads nothing here
            base = replace(base, load_s=0.0, unload_s=0.0, compile_s=0.0)
        if "load_seconds" in m or "wake_seconds" in m:
            base = replace(base, sleep_s=0.0, unload_s=0.0, compile_s=0.0)
        out[name] = ExpertFigures(
            load_s=m.get("load_seconds", base.load_s),
            wake_s=m.get("wake_seconds", base.wake_s) if can_sleep else None,
            tokens_per_s=m.get("tokens_per_second", base.tokens_per_s),
            prefill_tokens_per_s=float("inf") if "tokens_per_second" in m else base.prefill_tokens_per_s,
            weight_bytes=base.weight_bytes,
            footprint_bytes=footprint_of(name, 0),
            sleep_s=base.sleep_s, unload_s=base.unload_s, compile_s=base.compile_s,
        )
    return out


def simulate(stages: Sequence[StageWork], figures: Mapping[str, ExpertFigures], n_slots: int,
             host_ram_bytes: float = float("inf"), gpu_memory_bytes: float | None = None,
             deactivate: str = "auto", max_replicas: int = 1, replica_min_requests: int = 8) -> Simulation:
    """Replay the executor's decisions over ``stages`` on ``n_slots`` GPU slots; a barrier between stages.

    ``gpu_memory_bytes`` (per slot) enables co-residency, ``deactivate`` is the sleep-or-unload
    policy (``scheduler.deactivate``), and ``max_replicas`` spreads large groups, as in the executor.
    Streamed aggregation (several slots, ``max_replicas`` 1) is not modeled: the prediction is an
    upper bound there.
    """
    sim = Simulation(n_slots, 0.0)
    slots = _Slots([[] for _ in range(n_slots)], {}, figures, host_ram_bytes, gpu_memory_bytes, deactivate)
    home: dict[str, int] = {}
    now = 0.0
    for stage in stages:
        now += stage.cpu_seconds
        resident = [e for slot in slots.resident for e in slot]
        works = spread(list(stage.works), n_slots, max_replicas, replica_min_requests)
        ordered = order_groups(works, resident, stage.next_experts)
        homes = {e: s for e, s in home.items() if e in slots.sleeping or e in resident}
        ends = [now]
        for slot, queue in enumerate(assign_slots(ordered, n_slots, homes)):
            clock = now
            for index, work in enumerate(queue):
                keep = {w.key for w in queue[index + 1 :]} | set(stage.next_experts)
                kind, activation = slots.activate(work, slot, keep, stage.later)
                generate = figures[work.expert].generate_s(work)
                sim.entries.append({"stage": stage.name, "expert": work.expert, "slot": slot, "kind": kind,
                                    "start": round(clock, 3), "activation_seconds": round(activation, 3),
                                    "end": round(clock + activation + generate, 3), "requests": work.requests,
                                    **({"replica": work.replica} if work.replica else {})})
                clock += activation + generate
                home[work.key] = slot
            ends.append(clock)
        now = max(ends)
    sim.makespan = round(now, 3)
    return sim


@dataclass
class _Slots:
    """The simulator's view of the slots: resident experts (least recently used first), sleepers."""

    resident: list[list[str]]
    sleeping: dict[str, float]
    figures: Mapping[str, ExpertFigures]
    host_ram_bytes: float
    gpu_memory_bytes: float | None
    deactivate: str = "auto"
    expert_of: dict[str, str] = field(default_factory=dict)  # copy (expert or expert#i) -> expert
    started: set[str] = field(default_factory=set)  # experts loaded once (their compile is cached)

    def activate(self, work: Work, slot: int, keep: set[str],
                 later: Sequence[str] | None) -> tuple[str, float]:
        """Kind and seconds of making ``work``'s copy of its expert resident on ``slot``
        (the executor's rules)."""
        copy, residents = work.key, self.resident[slot]
        self.expert_of[copy] = work.expert
        if touch(residents, copy):
            return "resident", 0.0
        footprints = {e: self.figures[self.expert_of[e]].footprint_bytes for e in [*residents, copy]}
        seconds = 0.0  # deactivating the evicted, then activating this one
        for previous in evictions(residents, footprints, copy, self.gpu_memory_bytes, keep):
            residents.remove(previous)
            again = needed_again(previous, self.expert_of[previous], keep, later)
            seconds += self._deactivate(previous, again)
        residents.append(copy)
        fig = self.figures[work.expert]
        if copy in self.sleeping:
            self.sleeping.pop(copy)
            return "wake", seconds + fig.wake_s
        first = work.expert not in self.started
        self.started.add(work.expert)
        return "load", seconds + fig.load_s + (fig.compile_s if first else 0.0)

    def _deactivate(self, copy: str, again: bool) -> float:
        """Sleep as the executor's policy would (``wake_s`` None: cannot sleep), else unload; its seconds."""
        fig = self.figures[self.expert_of[copy]]
        pinned = sleeping_host_bytes(fig.weight_bytes)  # the executor's rule; a planned sleep is on a GPU
        fits = sum(self.sleeping.values()) + pinned <= self.host_ram_bytes
        if sleeps_on_deactivation(self.deactivate, fig.wake_s is not None, fits, again):
            self.sleeping[copy] = pinned
            return fig.sleep_s
        return fig.unload_s
