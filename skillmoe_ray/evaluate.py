"""Evaluation: accuracy per method, per task, per skill and per expert, for results.json."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from skillmoe_ray.aggregate import is_correct
from skillmoe_ray.config import RunConfig
from skillmoe_ray.data.instances import Instance
from skillmoe_ray.recruit import Recruitment


def accuracy(flags: Sequence[bool]) -> float:
    """Fraction of True in ``flags`` (0.0 for none)."""
    return round(sum(flags) / len(flags), 4) if flags else 0.0


def method_scores(test: Sequence[Instance], correct: Mapping[str, bool]) -> dict:
    """Overall and per-task accuracy of one method."""
    per_task: dict[str, list[bool]] = defaultdict(list)
    for inst in test:
        per_task[inst.task].append(correct[inst.id])
    return {
        "accuracy": accuracy([correct[inst.id] for inst in test]),
        "per_task": {task: accuracy(flags) for task, flags in sorted(per_task.items())},
    }


def per_skill(mapped: Mapping[str, Sequence[str]], correct: Mapping[str, bool]) -> dict:
    """Accuracy of the final answers grouped by each (mapped) skill of the instance."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for iid, skills in mapped.items():
        for skill in skills:
            groups[skill].append(correct[iid])
    return {s: {"n": len(f), "accuracy": accuracy(f)} for s, f in sorted(groups.items())}


def per_expert(expert_rows: Sequence[dict]) -> dict:
    """How often each expert was recruited, how accurate and how verbose its answers were."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in expert_rows:
        groups[row["expert"]].append(row)
    return {
        expert: {
            "recruited": len(rows),
            "accuracy": accuracy([r["correct"] for r in rows]),
            "output_tokens": sum(r["output_tokens"] for r in rows),
        }
        for expert, rows in sorted(groups.items())
    }


def evaluate(
    cfg: RunConfig,
    val: Sequence[Instance],
    test: Sequence[Instance],
    recruitments: Sequence[Recruitment],
    expert_rows: Sequence[dict],
    final_rows: Sequence[dict],
    majority: Mapping[str, str | None],
    mapped: Mapping[str, Sequence[str]],
) -> dict:
    """The accuracy part of results.json."""
    by_id = {inst.id: inst for inst in test}
    final_correct = {row["id"]: row["correct"] for row in final_rows}
    majority_correct = {iid: is_correct(answer, by_id[iid]) for iid, answer in majority.items()}
    return {
        "experiment": cfg.experiment,
        "n_instances": len(test),
        "n_validation": len(val),
        "pool": [spec.name for spec in cfg.experts],
        "k": cfg.recruit.k,
        "recruit_policy": cfg.recruit.policy,
        "methods": {
            "symbolic_moe": method_scores(test, final_correct),
            "majority_vote": method_scores(test, majority_correct),
        },
        "per_skill": per_skill({iid: mapped.get(iid, []) for iid in by_id}, final_correct),
        "per_expert": per_expert(expert_rows),
        "distinct_experts_per_instance": round(
            sum(len(set(r.experts)) for r in recruitments) / max(len(recruitments), 1), 3
        ),
    }
