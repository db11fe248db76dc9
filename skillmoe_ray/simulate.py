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
from dataclasses import dataclass, field

from skillmoe_ray.config import CostConfig, RunConfig
from skillmoe_ray.plan import assign_slots, order_groups

GB = 1e9


@dataclass(frozen=True)
class Work:
    """One expert's share of a stage: what the simulator needs of an ExpertGroup."""

    expert: str
    requests: int
    prompt_tokens: int
    output_tokens: int

    @property
    def est_tokens(self) -> int:
        """Same ordering key as ExpertGroup.est_tokens: prompt plus output tokens."""
        return self.prompt_tokens + self.output_tokens


@dataclass(frozen=True)
class StageWork:
    """A stage's expert work, the experts the next stage needs, and its driver-side seconds."""

    name: str
    works: tuple[Work, ...] = ()
    next_experts: tuple[str, ...] = ()
    cpu_seconds: float = 0.0


@dataclass(frozen=True)
class ExpertFigures:
    """Seconds per activation (load from disk; wake from host RAM, if possible) and rates."""

    load_s: float
    wake_s: float | None
    tokens_per_s: float
    prefill_tokens_per_s: float = float("inf")
    weight_bytes: float = 0.0

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


def modeled_figures(cost: CostConfig, params_b: float | None, can_sleep: bool) -> ExpertFigures:
    """Figures from the cost model alone, for a model of ``params_b`` billion parameters."""
    weights = (params_b or cost.default_params_b) * 1e9 * cost.bytes_per_param
    return ExpertFigures(
        load_s=cost.engine_start_s + weights / (cost.disk_gb_per_s * GB) + cost.warmup_s,
        wake_s=weights / (cost.host_to_device_gb_per_s * GB) + cost.warmup_s if can_sleep else None,
        tokens_per_s=cost.tokens_per_s,
        prefill_tokens_per_s=cost.prefill_tokens_per_s,
        weight_bytes=weights,
    )


def expert_figures(cfg: RunConfig, measured: Mapping[str, dict], fingerprints: Mapping[str, str],
                   can_sleep: bool) -> dict[str, ExpertFigures]:
    """Per-model figures: measured values (by model fingerprint) override the modeled ones."""
    out = {}
    for name, spec in cfg.pool.items():
        base = modeled_figures(cfg.scheduler.cost, spec.params_b, can_sleep)
        m = measured.get(fingerprints[name], {})
        out[name] = ExpertFigures(
            load_s=m.get("load_seconds", base.load_s),
            wake_s=m.get("wake_seconds", base.wake_s) if can_sleep else None,
            tokens_per_s=m.get("tokens_per_second", base.tokens_per_s),
            prefill_tokens_per_s=float("inf") if "tokens_per_second" in m else base.prefill_tokens_per_s,
            weight_bytes=base.weight_bytes,
        )
    return out


def simulate(stages: Sequence[StageWork], figures: Mapping[str, ExpertFigures], n_slots: int,
             host_ram_bytes: float = float("inf")) -> Simulation:
    """Replay the executor's decisions over ``stages`` on ``n_slots`` GPU slots; a barrier between stages.

    Streamed aggregation (several slots) is not modeled: the prediction is an upper bound there.
    """
    sim = Simulation(n_slots, 0.0)
    resident: list[str | None] = [None] * n_slots
    sleeping: dict[str, float] = {}
    home: dict[str, int] = {}
    now = 0.0
    for stage in stages:
        now += stage.cpu_seconds
        ordered = order_groups(list(stage.works), [e for e in resident if e], stage.next_experts)
        homes = {e: s for e, s in home.items() if e in sleeping or e in resident}
        ends = [now]
        for slot, queue in enumerate(assign_slots(ordered, n_slots, homes)):
            clock = now
            for work in queue:
                kind, activation = _activate(work.expert, slot, resident, sleeping, figures, host_ram_bytes)
                generate = figures[work.expert].generate_s(work)
                sim.entries.append({"stage": stage.name, "expert": work.expert, "slot": slot, "kind": kind,
                                    "start": round(clock, 3), "activation_seconds": round(activation, 3),
                                    "end": round(clock + activation + generate, 3), "requests": work.requests})
                clock += activation + generate
                home[work.expert] = slot
            ends.append(clock)
        now = max(ends)
    sim.makespan = round(now, 3)
    return sim


def _activate(expert: str, slot: int, resident: list, sleeping: dict, figures: Mapping[str, ExpertFigures],
              host_ram_bytes: float) -> tuple[str, float]:
    """Kind and seconds of making ``expert`` active on ``slot`` (the executor's rules)."""
    if resident[slot] == expert:
        return "resident", 0.0
    previous = resident[slot]
    if previous is not None:  # deactivate: sleep if possible and within the host-RAM budget
        prev = figures[previous]
        if prev.wake_s is not None and sum(sleeping.values()) + prev.weight_bytes <= host_ram_bytes:
            sleeping[previous] = prev.weight_bytes
    resident[slot] = expert
    if expert in sleeping:
        sleeping.pop(expert)
        return "wake", figures[expert].wake_s
    return "load", figures[expert].load_s
