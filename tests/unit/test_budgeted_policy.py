"""The budgeted recruitment policy wired into the pipeline: budget, bounds, fewer activations."""

from __future__ import annotations

import pytest

from skillmoe_ray.budget.assignment import InfeasibleAssignment
from skillmoe_ray.config import BudgetConfig, RecruitConfig
from skillmoe_ray.method.recruit import recruit_budgeted, recruit_symbolic_moe
from tests.conftest import make_config
from tests.unit.test_pipeline import run_pipeline

POOL = ["a", "b", "c", "d"]
PROFILES = {"a": {"x": 3, "y": -1}, "b": {"x": 1, "y": 2}, "c": {"x": -2, "y": 1}, "d": {"x": 0, "y": 0}}
GLOBAL = {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}
SKILLS = {f"i{n}": (["x"], ["y"], ["x", "y"], [])[n % 4] for n in range(20)}


def budgeted(**budget) -> list:
    rc = RecruitConfig(policy="budgeted", k=3, budget=BudgetConfig(**budget))
    return recruit_budgeted(SKILLS, PROFILES, GLOBAL, POOL, rc, seed=0)


def test_budget_and_per_instance_bounds_hold():
    result = budgeted(per_instance=1.5, k_min=1, k_max=3)
    sizes = [len(r.experts) for r in result.recruitments]
    assert sum(sizes) <= round(1.5 * len(SKILLS)) and min(sizes) >= 1 and max(sizes) <= 3
    assert all(len(set(r.experts)) == len(r.experts) for r in result.recruitments)  # each expert once
    info = result.info
    assert info["policy"] == "budgeted" and info["budget"] == 30
    assert info["mean_k"] == pytest.approx(sum(sizes) / len(sizes))
    assert info["method"] == "row_greedy" and info["exact"] is True and "objective" in info


def test_max_experts_caps_the_distinct_experts_of_the_batch():
    result = budgeted(per_instance=2.0, max_experts=2)
    assert len({e for r in result.recruitments for e in r.experts}) <= 2
    assert result.info["distinct_experts"] <= 2 and result.info["method"] == "subset_enumeration"


def test_experts_are_listed_by_unified_score_best_first():
    import numpy as np

    from skillmoe_ray.budget.assignment import unified_scores

    result = budgeted(per_instance=3.0, k_max=3)
    suitability = np.array([[r.probabilities[m] for m in POOL] for r in result.recruitments])
    scores = unified_scores(suitability, 0.5, 1.0)
    for row, rec in enumerate(result.recruitments):
        ordered = [scores[row, POOL.index(e)] for e in rec.experts]
        assert ordered == sorted(ordered, reverse=True)


def test_symbolic_moe_reports_its_fixed_budget():
    result = recruit_symbolic_moe(SKILLS, PROFILES, GLOBAL, POOL, RecruitConfig(k=3), seed=0)
    assert (
        result.info["policy"] == "symbolic_moe" and result.info["budget"] == 60 and result.info["mean_k"] == 3
    )


def test_an_infeasible_budget_names_the_constraint():
    with pytest.raises(InfeasibleAssignment, match="budget"):
        budgeted(per_instance=0.5, k_min=1)


def test_budgeted_demo_activates_fewer_experts_and_reports_the_assignment(tmp_path):
    default, _ = run_pipeline(make_config(tmp_path, [], run_dir=tmp_path / "default"))
    capped, _ = run_pipeline(
        make_config(
            tmp_path, ["recruit=budgeted", "recruit.budget.max_experts=2"], run_dir=tmp_path / "budgeted"
        )
    )
    used = lambda r: {t["expert"] for t in r["timeline"] if t["stage"] == "inference"}  # noqa: E731
    assert len(used(capped)) <= 2 < len(used(default))
    info = capped["recruitment"]
    assert {"policy", "budget", "mean_k", "objective"} <= set(info) and info["policy"] == "budgeted"
    assert default["recruitment"]["policy"] == "symbolic_moe"


def test_single_expert_instances_skip_the_aggregator(tmp_path):
    results, _ = run_pipeline(make_config(tmp_path, ["recruit=budgeted", "recruit.budget.per_instance=1.0"]))
    assert results["recruitment"]["mean_k"] == 1.0
    assert "aggregation" not in results["stages"] or results["stages"]["aggregation"]["requests"] == 0
