"""Test-time methods as plans: who answers each instance, how answers are refined and combined.

Symbolic-MoE and the baselines it is compared with (DESIGN section 6) differ only in three things,
so each is a :class:`MethodPlan` built by a pure function:

- ``slots``: for every instance, the (model, sample) pairs that answer it in the first round;
- ``proposers`` and ``layers``: Mixture-of-Agents refinement rounds (layer 2..L: each proposer
  rewrites an answer given all answers of the previous layer);
- ``aggregator``: the model that synthesizes the final answer per instance, or None for a
  majority vote of the answers.

Because an answer request is identified by (model, instance, sample), methods that need the same
answer share it: "single" and "task_level" reuse sample 0 of the models they pick, "self-MoA"
reuses the samples of "self-consistency".
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from skillmoe_ray.config import RunConfig
from skillmoe_ray.data.instances import Instance
from skillmoe_ray.errors import ConfigError
from skillmoe_ray.method.recruit import Recruitment
from skillmoe_ray.registry import METHODS
from skillmoe_ray.seeding import derive_seed

Slot = tuple[str, int]  # (model, sample index)


@dataclass
class MethodPlan:
    """Everything the runner needs to execute one method on the test set."""

    name: str
    slots: dict[str, list[Slot]]
    aggregator: dict[str, str | None]
    proposers: list[str] = field(default_factory=list)
    layers: int = 1
    note: str = ""


@dataclass(frozen=True)
class MethodContext:
    """Shared results the plans are built from (profiles, recruitment, the chosen aggregator)."""

    test: Sequence[Instance]
    experts: Sequence[str]
    recruitments: Mapping[str, Recruitment]
    aggregator: str
    val_accuracy: Mapping[str, Mapping[str, float]]
    k: int
    seed: int
    moa_layers: int = 2
    moa_proposers: Sequence[str] | None = None
    moa_aggregator: str | None = None
    self_model: str | None = None
    skip_aggregator_single: bool = False
    skill_accuracy: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # the rival routers' recruitments (policy -> instance id -> recruitment) and how each combines answers
    routed: Mapping[str, Mapping[str, Recruitment]] = field(default_factory=dict)
    combine: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def for_run(cls, cfg: RunConfig, test: Sequence[Instance], recruitments: Mapping[str, Recruitment],
                aggregator: str, val_accuracy: Mapping[str, Mapping[str, float]], k: int | None = None,
                skill_accuracy: Mapping[str, Mapping[str, float]] | None = None,
                routed: Mapping[str, Mapping[str, Recruitment]] | None = None) -> MethodContext:
        """The context of a run's configuration (the baselines' settings from ``cfg.compare``, a rival
        router's from ``cfg.recruit.<its name>``); the batch pipeline and online serving (``k`` per
        request) build it here."""
        cc = cfg.compare
        return cls(test=test, experts=[s.name for s in cfg.experts], recruitments=recruitments,
                   aggregator=aggregator,
                   val_accuracy=val_accuracy, k=cfg.recruit.k if k is None else k, seed=cfg.seed,
                   moa_layers=cc.moa.layers, moa_proposers=cc.moa.proposers, moa_aggregator=cc.moa.aggregator,
                   self_model=cc.self_model, skip_aggregator_single=cfg.recruit.skip_aggregator_single,
                   skill_accuracy=skill_accuracy or {}, routed=routed or {},
                   combine={name: getattr(cfg.recruit, name).combine for name in routed or {}})


def with_samples(models: Sequence[str]) -> list[Slot]:
    """(model, sample) slots; a model listed twice answers with samples 0 and 1."""
    seen: dict[str, int] = defaultdict(int)
    slots = []
    for model in models:
        slots.append((model, seen[model]))
        seen[model] += 1
    return slots


def overall_accuracy(ctx: MethodContext, model: str) -> float:
    """Validation accuracy of a model over all tasks (the "all" entry)."""
    return ctx.val_accuracy[model]["all"]


def ranked(ctx: MethodContext, task: str = "all") -> list[str]:
    """Experts by validation accuracy on ``task``, best first; ties keep pool order."""
    return sorted(ctx.experts, key=lambda m: (-ctx.val_accuracy[m].get(task, 0.0), ctx.experts.index(m)))


def best_model(ctx: MethodContext) -> str:
    """The best single model on the validation split (or the configured one)."""
    return ctx.self_model or ranked(ctx)[0]


def _same_for_all(ctx: MethodContext, slots: list[Slot], aggregator: str | None) -> tuple[dict, dict]:
    return {i.id: list(slots) for i in ctx.test}, {i.id: aggregator for i in ctx.test}


def plan_symbolic_moe(ctx: MethodContext) -> list[MethodPlan]:
    """The recruited experts answer; the selected aggregator synthesizes.

    With ``skip_aggregator_single``, an instance whose recruits are one expert takes that
    expert's answer (majority of its samples) without an aggregation call.
    """
    slots = {iid: with_samples(r.experts) for iid, r in ctx.recruitments.items()}
    aggregators = {
        iid: None if ctx.skip_aggregator_single and len({m for m, _ in s}) == 1 else ctx.aggregator
        for iid, s in slots.items()
    }
    return [MethodPlan("symbolic_moe", slots, aggregators)]


def plan_majority_vote(ctx: MethodContext) -> list[MethodPlan]:
    """The recruited experts answer; their plain majority is the answer (no aggregator)."""
    slots = {iid: with_samples(r.experts) for iid, r in ctx.recruitments.items()}
    return [MethodPlan("majority_vote", slots, {iid: None for iid in slots})]


def plan_single(ctx: MethodContext) -> list[MethodPlan]:
    """Every expert alone (single/<model>), and "single": the one best on the validation split."""
    plans = [MethodPlan(f"single/{m}", *_same_for_all(ctx, [(m, 0)], None)) for m in ctx.experts]
    best = best_model(ctx)
    plans.append(MethodPlan("single", *_same_for_all(ctx, [(best, 0)], None), note=f"best: {best}"))
    return plans


def plan_self_consistency(ctx: MethodContext) -> list[MethodPlan]:
    """The best model sampled k times; majority vote."""
    best = best_model(ctx)
    slots = [(best, s) for s in range(ctx.k)]
    return [MethodPlan("self_consistency", *_same_for_all(ctx, slots, None), note=f"model: {best}")]


def plan_task_level(ctx: MethodContext) -> list[MethodPlan]:
    """For each task, the k experts with the best validation accuracy on it answer every instance."""
    chosen = {task: ranked(ctx, task)[: ctx.k] for task in {i.task for i in ctx.test}}
    slots = {i.id: [(m, 0) for m in chosen[i.task]] for i in ctx.test}
    note = "; ".join(f"{t}: {', '.join(ms)}" for t, ms in sorted(chosen.items()))
    return [MethodPlan("task_level", slots, {iid: ctx.aggregator for iid in slots}, note=note)]


def plan_random(ctx: MethodContext) -> list[MethodPlan]:
    """k experts drawn uniformly with replacement per instance (seeded); same aggregator."""
    slots = {}
    for inst in ctx.test:
        rng = random.Random(derive_seed(ctx.seed, "random", inst.id))
        slots[inst.id] = with_samples(rng.choices(list(ctx.experts), k=ctx.k))
    return [MethodPlan("random", slots, {iid: ctx.aggregator for iid in slots})]


def plan_moa(ctx: MethodContext) -> list[MethodPlan]:
    """Mixture-of-Agents: proposers answer, refine over layers, one aggregator synthesizes."""
    proposers = list(ctx.moa_proposers or ranked(ctx)[: ctx.k])
    unknown = [p for p in proposers if p not in ctx.experts]
    if unknown:
        raise ConfigError(f"compare.moa.proposers: unknown expert {unknown[0]!r}; "
                          f"experts: {', '.join(ctx.experts)}")
    if ctx.moa_layers < 1:
        raise ConfigError(f"compare.moa.layers must be >= 1, got {ctx.moa_layers}")
    aggregator = ctx.moa_aggregator or ctx.aggregator
    slots, aggregators = _same_for_all(ctx, [(p, 0) for p in proposers], aggregator)
    note = f"{ctx.moa_layers} layers, proposers: {', '.join(proposers)}"
    return [MethodPlan("moa", slots, aggregators, proposers=proposers, layers=ctx.moa_layers, note=note)]


def plan_self_moa(ctx: MethodContext) -> list[MethodPlan]:
    """Self-MoA: the best model sampled k times, then the same model aggregates its samples."""
    best = best_model(ctx)
    slots = [(best, s) for s in range(ctx.k)]
    return [MethodPlan("self_moa", *_same_for_all(ctx, slots, best), note=f"model: {best}")]


def plan_routed(ctx: MethodContext, name: str) -> list[MethodPlan]:
    """The experts the rival router ``name`` recruited answer; their majority is the answer, or the selected
    aggregator synthesizes it (``recruit.<name>.combine``)."""
    if name not in ctx.routed:
        raise ValueError(f"method {name!r} needs the recruitments of policy {name!r} in its context")
    slots = {iid: with_samples(r.experts) for iid, r in ctx.routed[name].items()}
    combine = ctx.combine.get(name, "vote")
    aggregator = ctx.aggregator if combine == "aggregator" else None
    return [MethodPlan(name, slots, {iid: aggregator for iid in slots}, note=f"combined by {combine}")]


def plan_avengers(ctx: MethodContext) -> list[MethodPlan]:
    """Avengers (arXiv 2505.19797): the k models best on the question's nearest validation cluster
    (:func:`skillmoe_ray.method.rivals.recruit_avengers`), voted as Avengers does, or aggregated."""
    return plan_routed(ctx, "avengers")


def plan_knn(ctx: MethodContext) -> list[MethodPlan]:
    """The nearest-neighbour router's k models (:func:`skillmoe_ray.method.rivals.recruit_knn`), voted or
    aggregated."""
    return plan_routed(ctx, "knn")


def plan_oracle(ctx: MethodContext) -> list[MethodPlan]:
    """The upper bound of routing: each instance answered by the expert best on its gold skill (validation).

    Needs data that records each instance's gold skill (``subject``, as the skill lab's questions do).
    """
    if not ctx.skill_accuracy or any(not inst.subject for inst in ctx.test):
        raise ConfigError(
            "compare.methods: 'oracle' needs the gold skill (subject) of every validation and test "
            "instance, as the skill lab's data records it; this data has none"
        )
    best = {}
    for inst in ctx.test:
        if inst.subject not in best:
            best[inst.subject] = max(
                ctx.experts,
                key=lambda m: (ctx.skill_accuracy[m].get(inst.subject, 0.0), -ctx.experts.index(m)),
            )
    slots, aggregators = {i.id: [(best[i.subject], 0)] for i in ctx.test}, {i.id: None for i in ctx.test}
    note = "; ".join(f"{skill}: {model}" for skill, model in sorted(best.items()))
    return [MethodPlan("oracle", slots, aggregators, note=f"best expert per gold skill: {note}")]


def build_plans(names: Sequence[str], ctx: MethodContext) -> list[MethodPlan]:
    """Plans for the named methods (registered in :data:`skillmoe_ray.registry.METHODS`), in order."""
    METHODS.check(names)
    return [plan for name in dict.fromkeys(names) for plan in METHODS.load(name)(ctx)]
