"""Each baseline's defining rule, as a plan (pure) and as executed by the pipeline in compare mode."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from skillmoe_ray.data.instances import Instance
from skillmoe_ray.errors import ConfigError
from skillmoe_ray.method.catalog import MethodContext, build_plans
from skillmoe_ray.method.recruit import Recruitment

EXPERTS = ["a", "b", "c", "d"]


def instances(n=12):
    return [Instance(f"q{i}", "math" if i % 3 == 0 else "mc", f"question {i}", "A",
                     "choice") for i in range(n)]


def context(seed=0, **kw):
    test = instances()
    accuracy = {  # b is best overall and on mc; c, d, a best on math
        "a": {"all": 0.40, "mc": 0.40, "math": 0.50},
        "b": {"all": 0.80, "mc": 0.90, "math": 0.10},
        "c": {"all": 0.60, "mc": 0.60, "math": 0.90},
        "d": {"all": 0.50, "mc": 0.50, "math": 0.70},
    }
    recruitments = {i.id: Recruitment(i.id, ("x",), ("a", "a", "c"), {}) for i in test}
    return MethodContext(test, EXPERTS, recruitments, "agg", accuracy, k=3, seed=seed, **kw)


def plan(name, ctx=None):
    return {p.name: p for p in build_plans([name], ctx or context())}


def test_task_level_picks_the_same_top_k_experts_for_every_instance_of_a_task():
    p = plan("task_level")["task_level"]
    by_task = {}
    for inst in context().test:
        by_task.setdefault(inst.task, set()).add(tuple(p.slots[inst.id]))
    assert by_task == {"mc": {(("b", 0), ("c", 0), ("d", 0))}, "math": {(("c", 0), ("d", 0), ("a", 0))}}
    assert set(p.aggregator.values()) == {"agg"}


def test_random_recruitment_is_reproducible_from_the_seed():
    first = plan("random", context(seed=1))["random"].slots
    assert plan("random", context(seed=1))["random"].slots == first
    assert plan("random", context(seed=2))["random"].slots != first
    assert all(len(s) == 3 for s in first.values())
    assert {m for s in first.values() for m, _ in s} <= set(EXPERTS)


def test_random_draws_with_replacement_and_numbers_repeated_samples():
    slots = plan("random", context(seed=3))["random"].slots
    repeated = [s for s in slots.values() if len({m for m, _ in s}) < 3]
    assert repeated, "with 4 experts and k=3, some instance draws a model twice"
    for s in repeated:
        samples = Counter(m for m, _ in s)
        for model, count in samples.items():
            assert sorted(n for m, n in s if m == model) == list(range(count))


@pytest.mark.parametrize("layers, proposers", [(1, None), (2, None), (3, ("d", "a"))])
def test_moa_layers_and_proposers_follow_the_config(layers, proposers):
    p = plan("moa", context(moa_layers=layers, moa_proposers=proposers))["moa"]
    expected = list(proposers) if proposers else ["b", "c", "d"]  # default: the k best on validation
    assert p.layers == layers and p.proposers == expected
    assert all(s == [(m, 0) for m in expected] for s in p.slots.values())


def test_moa_rejects_an_unknown_proposer_and_zero_layers():
    with pytest.raises(ConfigError, match="unknown expert 'zz'"):
        plan("moa", context(moa_proposers=("zz",)))
    with pytest.raises(ConfigError, match="layers must be >= 1"):
        plan("moa", context(moa_layers=0))


def test_single_runs_every_expert_and_names_the_best_on_validation():
    plans = plan("single")
    assert set(plans) == {"single", "single/a", "single/b", "single/c", "single/d"}
    assert plans["single"].note == "best: b"
    assert all(s == [("b", 0)] for s in plans["single"].slots.values())
    assert all(a is None for a in plans["single/c"].aggregator.values())


def test_self_consistency_samples_one_model_k_times_and_votes():
    p = plan("self_consistency")["self_consistency"]
    assert all(s == [("b", 0), ("b", 1), ("b", 2)] for s in p.slots.values())
    assert set(p.aggregator.values()) == {None}


def test_self_moa_aggregates_its_own_samples_with_the_same_model():
    p = plan("self_moa", context(self_model="c"))["self_moa"]
    assert all(s == [("c", 0), ("c", 1), ("c", 2)] for s in p.slots.values())
    assert set(p.aggregator.values()) == {"c"}


def test_symbolic_moe_and_majority_vote_share_the_recruited_slots():
    plans = {p.name: p for p in build_plans(["symbolic_moe", "majority_vote"], context())}
    assert plans["symbolic_moe"].slots == plans["majority_vote"].slots
    assert plans["symbolic_moe"].slots["q0"] == [("a", 0), ("a", 1), ("c", 0)]
    assert set(plans["symbolic_moe"].aggregator.values()) == {"agg"}
    assert set(plans["majority_vote"].aggregator.values()) == {None}


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(
        ConfigError,
        match="compare.methods: unknown method 'prophet'; available: single, self_consistency.*, oracle",
    ):
        build_plans(["prophet"], context())


# --- compare mode through the pipeline (fake engine, in-process) ---------------------------------


@pytest.fixture
def compared(tmp_path):
    from tests.conftest import make_config
    from tests.unit.test_pipeline import run_pipeline

    results, _ = run_pipeline(make_config(tmp_path, ["mode=compare", "compare.moa.layers=3"]))
    return results, tmp_path / "run"


def test_compare_reports_every_method_with_accuracy_and_costs(compared):
    results, run = compared
    names = {"single", "self_consistency", "majority_vote", "task_level", "random", "moa", "self_moa",
             "symbolic_moe"}
    assert names <= set(results["methods"])
    for name in names:
        m = results["methods"][name]
        assert 0 <= m["accuracy"] <= 1 and m["generated_tokens"] > 0 and m["activations"] >= 1
        assert m["gpu_seconds"] >= 0 and m["wall_seconds"] is not None
    table = (run / "comparison.md").read_text()
    assert all(f"| {name} |" in table for name in names)
    assert len((run / "comparison.csv").read_text().splitlines()) == len(results["methods"]) + 1


def test_compare_gives_standard_errors_and_paired_bootstrap_differences_to_symbolic_moe(compared):
    from skillmoe_ray.reporting.stats import standard_error

    results, run = compared
    sym, single = results["methods"]["symbolic_moe"], results["methods"]["single"]
    n = results["n_instances"]
    assert sym["stderr"] == standard_error(
        [True] * round(sym["accuracy"] * n) + [False] * round((1 - sym["accuracy"]) * n)
    )
    assert "vs_symbolic_moe" not in sym
    paired = single["vs_symbolic_moe"]
    assert paired["difference"] == pytest.approx(single["accuracy"] - sym["accuracy"], abs=1e-3)
    assert paired["low"] <= paired["difference"] <= paired["high"]
    table = (run / "comparison.md").read_text()
    lo, hi = sym["ci95"]
    assert lo <= sym["accuracy"] <= hi
    assert "vs symbolic_moe [95% CI]" in table
    assert f"| symbolic_moe | {sym['accuracy']:.3f} +/- {sym['stderr']:.3f} [{lo:.3f}, {hi:.3f}] |" in table
    csv_rows = (run / "comparison.csv").read_text().splitlines()
    header = csv_rows[0].split(",")
    assert header[:5] == ["method", "accuracy", "stderr", "ci95_low", "ci95_high"]
    assert {"vs_symbolic_moe", "vs_low", "vs_high"} <= set(header)
    sym_row = next(r.split(",") for r in csv_rows if r.startswith("symbolic_moe,"))
    assert [float(v) for v in sym_row[3:5]] == [lo, hi]


def test_compare_shares_generations_and_activations_between_methods(compared):
    results, _ = compared
    inference = results["stages"]["inference"]
    assert inference["generated"] < inference["requests"]  # e.g. single/b and task_level reuse one answer
    summary = results["comparison"]
    assert summary["activations_actual"] < summary["activations_if_run_separately"]


def test_compare_runs_one_refinement_stage_per_extra_moa_layer(compared):
    results, _ = compared
    proposers = results["methods"]["moa"]["note"].split("proposers: ")[1].split(", ")
    assert {"moa_layer_2", "moa_layer_3"} <= set(results["stages"])
    assert "moa_layer_4" not in results["stages"]
    assert results["stages"]["moa_layer_3"]["requests"] == 40 * len(proposers)


def test_final_answers_hold_every_methods_answer(compared):
    results, run = compared
    rows = [json.loads(line) for line in (run / "final_answers.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and set(rows[0]["answers"]) == set(results["methods"])


def test_final_answers_carry_the_question_text_so_the_file_reads_on_its_own(compared):
    _, run = compared
    rows = [json.loads(line) for line in (run / "final_answers.jsonl").read_text().splitlines()]
    assert all(isinstance(row["question"], str) and row["question"].strip() for row in rows)
    choice = next((row for row in rows if row["gold"] in "ABCDEFGHIJ"), None)
    assert choice is None or "Options:" in choice["question"]
