"""Evaluation: accuracy and cost per method, per task, per skill and per expert, for results.json."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

from skillmoe_ray.aggregate import extract_answer, is_correct
from skillmoe_ray.config import RunConfig
from skillmoe_ray.data.instances import Instance
from skillmoe_ray.recruit import Recruitment
from skillmoe_ray.testtime import PlanRun, PlanRunner


def accuracy(flags: Sequence[bool]) -> float:
    """Fraction of True in ``flags`` (0.0 for none)."""
    return round(sum(flags) / len(flags), 4) if flags else 0.0


def validation_accuracy(val: Sequence[Instance], correct: Mapping[str, Mapping[str, bool]]) -> dict[str, dict[str, float]]:
    """Each model's validation accuracy per task and over all tasks ("all"), from the profile answers."""
    out = {}
    for model, graded in correct.items():
        per_task: dict[str, list[bool]] = defaultdict(list)
        for inst in val:
            per_task[inst.task].append(graded[inst.id])
        out[model] = {task: accuracy(f) for task, f in per_task.items()}
        out[model]["all"] = accuracy([graded[i.id] for i in val])
    return out


def method_scores(test: Sequence[Instance], correct: Mapping[str, bool]) -> dict:
    """Overall and per-task accuracy of one method."""
    per_task: dict[str, list[bool]] = defaultdict(list)
    for inst in test:
        per_task[inst.task].append(correct[inst.id])
    return {
        "accuracy": accuracy([correct[inst.id] for inst in test]),
        "per_task": {task: accuracy(flags) for task, flags in sorted(per_task.items())},
    }


def method_costs(run: PlanRun, records: Mapping[str, dict], activation_seconds: Callable[[str], float | None]) -> dict:
    """What the method costs on its own at test time: tokens, GPU-seconds, activations, wall time.

    Requests are counted once each even when another method shared them, and GPU-seconds are the
    time their generation took when it ran (kept with each cached output), so the figures are the
    same whether this run generated them or found them in the cache. Activations assume the batch
    plan: one per distinct expert per phase. Wall time adds each activation at the seconds measured
    for that model (this run or an earlier one; null when no activation of any model was measured).
    """
    keys = {key for requests in run.phase_requests.values() for _, key in requests}
    gpu = sum(records[k].get("seconds", 0.0) for k in keys)
    per_phase = [{e for e, _ in requests} for requests in run.phase_requests.values()]
    activations = sum(len(experts) for experts in per_phase)
    load = [activation_seconds(e) for experts in per_phase for e in experts]
    known = [t for t in load if t is not None]
    wall = round(gpu + sum(t if t is not None else sum(known) / len(known) for t in load), 3) if known else None
    return {
        "generated_tokens": sum(records[k]["output_tokens"] for k in keys),
        "gpu_seconds": round(gpu, 3),
        "activations": activations,
        "wall_seconds": wall,
    }


def expert_rows(run: PlanRun, runner: PlanRunner, think_end_tag: str) -> list[dict]:
    """One row per (instance, slot) of a method's first round: expert, answer, correctness, tokens."""
    rows = []
    for iid, answered in run.first_round.items():
        inst = runner.by_id[iid]
        for slot, (expert, key) in enumerate(answered):
            record = runner.records[key]
            answer = extract_answer(record["text"], inst, think_end_tag)
            rows.append({"id": iid, "slot": slot, "expert": expert, "key": key, "answer": answer,
                         "correct": is_correct(answer, inst), "output_tokens": record["output_tokens"]})
    return rows


def per_skill(mapped: Mapping[str, Sequence[str]], correct: Mapping[str, bool]) -> dict:
    """Accuracy of the final answers grouped by each (mapped) skill of the instance."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for iid, skills in mapped.items():
        for skill in skills:
            groups[skill].append(correct[iid])
    return {s: {"n": len(f), "accuracy": accuracy(f)} for s, f in sorted(groups.items())}


def per_expert(rows: Sequence[dict]) -> dict:
    """How often each expert was recruited, how accurate and how verbose its answers were."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["expert"]].append(row)
    return {
        expert: {
            "recruited": len(rs),
            "accuracy": accuracy([r["correct"] for r in rs]),
            "output_tokens": sum(r["output_tokens"] for r in rs),
        }
        for expert, rs in sorted(groups.items())
    }


def evaluate(
    cfg: RunConfig,
    val: Sequence[Instance],
    test: Sequence[Instance],
    recruitments: Sequence[Recruitment],
    runner: PlanRunner,
    runs: Mapping[str, PlanRun],
    mapped: Mapping[str, Sequence[str]],
    activation_seconds: Callable[[str], float | None],
) -> tuple[dict, list[dict]]:
    """The accuracy and cost part of results.json, and the recruited experts' output rows.

    ``activation_seconds(expert)`` gives the measured seconds of one activation of an expert.
    """
    methods = {}
    for name, run in runs.items():
        methods[name] = {**method_scores(test, runner.correct(run)), **method_costs(run, runner.records, activation_seconds)}
        if run.plan.note:
            methods[name]["note"] = run.plan.note
    sym = runs["symbolic_moe"]
    rows = expert_rows(sym, runner, cfg.aggregator.think_end_tag)
    results = {
        "experiment": cfg.experiment,
        "mode": cfg.mode,
        "n_instances": len(test),
        "n_validation": len(val),
        "pool": [spec.name for spec in cfg.experts],
        "k": cfg.recruit.k,
        "recruit_policy": cfg.recruit.policy,
        "methods": methods,
        "per_skill": per_skill({i.id: mapped.get(i.id, []) for i in test}, runner.correct(sym)),
        "per_expert": per_expert(rows),
        "distinct_experts_per_instance": round(
            sum(len(set(r.experts)) for r in recruitments) / max(len(recruitments), 1), 3
        ),
    }
    return results, rows
