"""Evaluation: accuracy and cost per method, per task, per skill and per expert, for results.json.

:func:`evaluate` makes results.json's whole content from a
:class:`~skillmoe_ray.reporting.run_result.RunResult`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

from skillmoe_ray.config import RunConfig
from skillmoe_ray.data.instances import Instance
from skillmoe_ray.method.aggregate import extract_answer, is_correct
from skillmoe_ray.method.recruit import Recruitment
from skillmoe_ray.method.runner import PlanRun, PlanRunner
from skillmoe_ray.records import Generation
from skillmoe_ray.reporting.compare import comparison_summary
from skillmoe_ray.reporting.run_result import RunResult
from skillmoe_ray.reporting.stats import accuracy_entry, paired_bootstrap
from skillmoe_ray.seeding import derive_seed


def accuracy(flags: Sequence[bool]) -> float:
    """Fraction of True in ``flags`` (0.0 for none)."""
    return round(sum(flags) / len(flags), 4) if flags else 0.0


def accuracy_by(instances: Sequence[Instance], graded: Mapping[str, bool],
                key: Callable[[Instance], str]) -> dict[str, float]:
    """Accuracy of one model's graded answers per group of instances (``key`` names an instance's group)."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for inst in instances:
        groups[key(inst)].append(graded[inst.id])
    return {group: accuracy(f) for group, f in groups.items()}


def validation_accuracy(
    val: Sequence[Instance], correct: Mapping[str, Mapping[str, bool]]
) -> dict[str, dict[str, float]]:
    """Each model's validation accuracy per task and over all tasks ("all"), from the profile answers."""
    return {
        model: {**accuracy_by(val, graded, lambda i: i.task), "all": accuracy([graded[i.id] for i in val])}
        for model, graded in correct.items()
    }


def has_gold_skills(instances: Sequence[Instance]) -> bool:
    """Whether every instance records its gold skill.

    The gold skill is ``subject``: the skill lab's, or a benchmark's subject.
    """
    return bool(instances) and all(inst.subject for inst in instances)


def gold_skill_accuracy(
    val: Sequence[Instance], correct: Mapping[str, Mapping[str, bool]]
) -> dict[str, dict[str, float]]:
    """Each model's validation accuracy per gold skill (empty when the data records no gold skills)."""
    if not has_gold_skills(val):
        return {}
    return {
        model: dict(sorted(accuracy_by(val, graded, lambda i: i.subject).items()))
        for model, graded in correct.items()
    }


SPECIALIST_ACCURACY = 0.8


def specialists(skill_accuracy: Mapping[str, Mapping[str, float]]) -> dict[str, list[str]]:
    """Per gold skill, the experts whose validation accuracy on it is at least :data:`SPECIALIST_ACCURACY`."""
    skills = sorted({s for per_skill in skill_accuracy.values() for s in per_skill})
    return {
        s: [m for m, acc in skill_accuracy.items() if acc.get(s, 0.0) >= SPECIALIST_ACCURACY] for s in skills
    }


def specialist_share(
    test: Sequence[Instance],
    recruitments: Sequence[Recruitment],
    skill_accuracy: Mapping[str, Mapping[str, float]],
) -> float | None:
    """Share of recruited (instance, expert) slots whose expert is a gold-skill specialist.

    A slot counts when its expert is a specialist of the instance's gold skill.
    """
    if not skill_accuracy or not has_gold_skills(test):
        return None
    gold = {inst.id: inst.subject for inst in test}
    experts_of = specialists(skill_accuracy)
    slots = [(gold[r.instance_id], e) for r in recruitments for e in r.experts]
    return accuracy([e in experts_of.get(s, ()) for s, e in slots]) if slots else None


def method_scores(test: Sequence[Instance], correct: Mapping[str, bool]) -> dict:
    """Overall and per-task accuracy of one method."""
    per_task: dict[str, list[bool]] = defaultdict(list)
    for inst in test:
        per_task[inst.task].append(correct[inst.id])
    every = [correct[inst.id] for inst in test]
    return {
        **accuracy_entry(every),
        "per_task": {task: accuracy(flags) for task, flags in sorted(per_task.items())},
    }


REFERENCE_METHOD = "symbolic_moe"


def paired_differences(
    test: Sequence[Instance], correct: Mapping[str, Mapping[str, bool]], seed: int
) -> dict:
    """Each method's accuracy minus Symbolic-MoE's on the same instances.

    Each difference comes with a seeded 95% bootstrap interval.
    """
    reference = [correct[REFERENCE_METHOD][inst.id] for inst in test]
    return {
        name: paired_bootstrap(
            [flags[inst.id] for inst in test], reference, derive_seed(seed, "bootstrap", name)
        )
        for name, flags in correct.items()
        if name != REFERENCE_METHOD
    }


def method_costs(
    run: PlanRun, records: Mapping[str, Generation], activation_seconds: Callable[[str], float | None]
) -> dict:
    """What the method costs on its own at test time: tokens, GPU-seconds, activations, wall time.

    Requests are counted once each even when another method shared them, and GPU-seconds are the
    time their generation took when it ran (kept with each cached output), so the figures are the
    same whether this run generated them or found them in the cache. Activations assume the batch
    plan: one per distinct expert per phase. Wall time adds each activation at the seconds measured
    for that model (this run or an earlier one; null when no activation of any model was measured).
    """
    keys = {key for requests in run.phase_requests.values() for _, key in requests}
    gpu = sum(records[k].seconds for k in keys)
    per_phase = [{e for e, _ in requests} for requests in run.phase_requests.values()]
    activations = sum(len(experts) for experts in per_phase)
    load = [activation_seconds(e) for experts in per_phase for e in experts]
    known = [t for t in load if t is not None]
    wall = (
        round(gpu + sum(t if t is not None else sum(known) / len(known) for t in load), 3) if known else None
    )
    return {
        "generated_tokens": sum(records[k].output_tokens for k in keys),
        "gpu_seconds": round(gpu, 3),
        "activations": activations,
        "wall_seconds": wall,
    }


@dataclass(frozen=True)
class ExpertAnswer:
    """One recruited expert's answer to one instance (a slot of Symbolic-MoE's first round), graded."""

    id: str
    slot: int
    expert: str
    key: str
    answer: str | None
    correct: bool
    output_tokens: int

    def to_json(self, text: str) -> dict:
        """Its line of expert_outputs.jsonl, with the answer's ``text``."""
        return {**asdict(self), "text": text}


def expert_rows(run: PlanRun, runner: PlanRunner, think_end_tag: str) -> list[ExpertAnswer]:
    """One row per (instance, slot) of a method's first round: expert, answer, correctness, tokens."""
    rows = []
    for iid, answered in run.first_round.items():
        inst = runner.by_id[iid]
        for slot, (expert, key) in enumerate(answered):
            generation = runner.records[key]
            answer = extract_answer(generation.text, inst, think_end_tag, generation.finish_reason)
            rows.append(
                ExpertAnswer(
                    iid, slot, expert, key, answer, is_correct(answer, inst), generation.output_tokens
                )
            )
    return rows


def per_skill(mapped: Mapping[str, Sequence[str]], correct: Mapping[str, bool]) -> dict:
    """Accuracy of the final answers grouped by each (mapped) skill of the instance."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for iid, skills in mapped.items():
        for skill in skills:
            groups[skill].append(correct[iid])
    return {s: {"n": len(f), **accuracy_entry(f)} for s, f in sorted(groups.items())}


def per_expert(rows: Sequence[ExpertAnswer]) -> dict:
    """How often each expert was recruited, how accurate and how verbose its answers were."""
    groups: dict[str, list[ExpertAnswer]] = defaultdict(list)
    for row in rows:
        groups[row.expert].append(row)
    return {
        expert: {
            "recruited": len(rs),
            **accuracy_entry([r.correct for r in rs]),
            "no_answer": sum(r.answer is None for r in rs),  # no answer read (misses, not misreads)
            "output_tokens": sum(r.output_tokens for r in rs),
        }
        for expert, rs in sorted(groups.items())
    }


def evaluate(
    cfg: RunConfig, run: RunResult, activation_seconds: Callable[[str], float | None]
) -> tuple[dict, list[ExpertAnswer]]:
    """results.json's content, and the recruited experts' answers (for expert_outputs.jsonl).

    ``activation_seconds(expert)`` gives the measured seconds of one activation of an expert.
    """
    results, rows = scores(cfg, run, activation_seconds)
    routing, execution = run.routing, run.execution
    results.update(
        recruitment=routing.recruitment.info,
        aggregator=routing.selection.to_json(),
        stages={name: record.to_json() for name, record in execution.stages.items()},
        **execution.summary.to_json(),
        wall_seconds=execution.wall_seconds,
    )
    if routing.steering:
        results["steering"] = routing.steering
    if routing.rivals:  # the rival routers' own recruitments (policy, mean k, distinct experts, settings)
        results["rival_recruitment"] = {name: stage.info for name, stage in routing.rivals.items()}
    if cfg.mode == "compare":
        results["comparison"] = comparison_summary(results)
    return results, rows


def scores(
    cfg: RunConfig, run: RunResult, activation_seconds: Callable[[str], float | None]
) -> tuple[dict, list[ExpertAnswer]]:
    """The accuracy and cost part of results.json, and the recruited experts' answers."""
    test, runner, runs, recruitments = run.test, run.runner, run.runs, run.recruitments
    skill_accuracy = run.routing.skill_accuracy
    methods = {}
    correct = {name: runner.correct(plan_run) for name, plan_run in runs.items()}
    for name, plan_run in runs.items():
        methods[name] = {
            **method_scores(test, correct[name]),
            **method_costs(plan_run, runner.records, activation_seconds),
        }
        if plan_run.plan.note:
            methods[name]["note"] = plan_run.plan.note
    if cfg.mode == "compare":
        for name, paired in paired_differences(test, correct, cfg.seed).items():
            methods[name]["vs_symbolic_moe"] = paired
    sym = runs["symbolic_moe"]
    rows = expert_rows(sym, runner, cfg.aggregator.think_end_tag)
    mapped = run.routing.mapping.mapped
    results = {
        "experiment": cfg.experiment,
        "mode": cfg.mode,
        "n_instances": len(test),
        "n_validation": len(run.val),
        "pool": [spec.name for spec in cfg.experts],
        "k": cfg.recruit.k,
        "seed": cfg.seed,
        "recruit_policy": cfg.recruit.policy,
        "methods": methods,
        "per_skill": per_skill({i.id: mapped.get(i.id, []) for i in test}, runner.correct(sym)),
        "per_expert": per_expert(rows),
        "distinct_experts_per_instance": round(
            sum(len(set(r.experts)) for r in recruitments) / max(len(recruitments), 1), 3
        ),
    }
    if skill_accuracy and has_gold_skills(test):
        results["specialist_share"] = specialist_share(test, recruitments, skill_accuracy)
        results["gold_skills"] = gold_skill_report(test, rows, skill_accuracy)
    return results, rows


def gold_skill_report(
    test: Sequence[Instance], rows: Sequence[ExpertAnswer], skill_accuracy: Mapping[str, Mapping[str, float]]
) -> dict:
    """Per gold skill: test instances, its specialists (validation accuracy), and how the recruited
    specialists' answers scored on its test instances (Symbolic-MoE's first round)."""
    gold = {inst.id: inst.subject for inst in test}
    experts_of = specialists(skill_accuracy)
    report = {}
    for skill in sorted(set(gold.values())):
        own = experts_of.get(skill, [])
        answers = [r.correct for r in rows if gold[r.id] == skill and r.expert in own]
        report[skill] = {
            "n": sum(1 for s in gold.values() if s == skill),
            "specialists": {m: skill_accuracy[m].get(skill, 0.0) for m in own},
            "specialist_answers": len(answers),
            "specialist_test_accuracy": accuracy(answers) if answers else None,
        }
    return report
