"""The cost model and schedule simulator: hand-computed timelines, workload rules, replays."""

from __future__ import annotations

import pytest

from skillmoe_ray.engines.gpu_memory import PINNED_MARGIN
from skillmoe_ray.forecast.simulator import ExpertFigures, StageWork, Work, modeled_figures, simulate
from skillmoe_ray.forecast.workload import estimate_stages, stages_from_run
from tests.conftest import make_config

FIG = {e: ExpertFigures(load_s=10.0, wake_s=1.0, tokens_per_s=100.0, weight_bytes=1.0) for e in "abcd"}


def test_one_slot_adds_activations_and_generation():
    stages = [StageWork("s", (Work("a", 2, 0, 500), Work("b", 2, 0, 300)))]
    sim = simulate(stages, FIG, 1)
    assert sim.makespan == pytest.approx(10 + 5 + 10 + 3)
    assert [e["kind"] for e in sim.entries] == ["load", "load"]


def test_two_slots_run_in_parallel_and_the_longest_sets_the_makespan():
    stages = [StageWork("s", (Work("a", 1, 0, 500), Work("b", 1, 0, 300), Work("c", 1, 0, 100)))]
    sim = simulate(stages, FIG, 2)
    # longest first: a (15 s) on slot 0, b (13 s) on slot 1, then c on the slot with less work: slot 1
    assert {e["expert"]: e["slot"] for e in sim.entries} == {"a": 0, "b": 1, "c": 1}
    assert sim.makespan == pytest.approx(max(10 + 5, 10 + 3 + 10 + 1))
    assert simulate(stages, FIG, 1).makespan == pytest.approx(15 + 13 + 11)


def test_a_sleeping_expert_wakes_and_a_resident_one_costs_nothing():
    stages = [StageWork("s1", (Work("a", 1, 0, 100), Work("b", 1, 0, 100)), ("b",)),
              StageWork("s2", (Work("b", 1, 0, 100), Work("a", 1, 0, 100)))]
    sim = simulate(stages, FIG, 1)
    assert [(e["stage"], e["expert"], e["kind"]) for e in sim.entries] == [
        ("s1", "a", "load"), ("s1", "b", "load"), ("s2", "b", "resident"), ("s2", "a", "wake")]
    assert sim.makespan == pytest.approx(10 + 1 + 10 + 1 + 0 + 1 + 1 + 1)


def test_without_sleep_or_host_ram_a_second_activation_is_a_full_load():
    no_sleep = {e: ExpertFigures(10.0, None, 100.0, weight_bytes=1.0) for e in "ab"}
    stages = [StageWork("s1", (Work("a", 1, 0, 0), Work("b", 1, 0, 0))),
              StageWork("s2", (Work("a", 1, 0, 0),))]
    assert [e["kind"] for e in simulate(stages, no_sleep, 1).entries] == ["load", "load", "load"]
    assert [e["kind"] for e in simulate(stages, FIG, 1, host_ram_bytes=0.5).entries] == [
        "load",
        "load",
        "load",
    ]


def test_an_expert_no_later_stage_needs_leaves_the_host_ram_to_one_that_is():
    """As in the executor: with room for one sleeper, ``a`` (never needed again) is unloaded
    so ``b`` sleeps."""
    s1 = (Work("a", 1, 0, 300), Work("b", 1, 0, 200), Work("c", 1, 0, 100))
    known = [StageWork("s1", s1, later=("b",)), StageWork("s2", (Work("b", 1, 0, 0),), later=())]
    unknown = [StageWork("s1", s1), StageWork("s2", (Work("b", 1, 0, 0),))]
    assert simulate(known, FIG, 1, host_ram_bytes=PINNED_MARGIN).entries[-1]["kind"] == "wake"
    assert simulate(unknown, FIG, 1, host_ram_bytes=PINNED_MARGIN).entries[-1]["kind"] == "load"
    unloading = simulate(known, FIG, 1, host_ram_bytes=PINNED_MARGIN, deactivate="unload")
    assert unloading.entries[-1]["kind"] == "load"


def test_replicas_split_a_dominant_stage_over_the_slots():
    stages = [StageWork("s", (Work("a", 40, 0, 4000), Work("b", 2, 0, 100)))]
    alone = simulate(stages, FIG, 4)
    spread = simulate(stages, FIG, 4, max_replicas=4)
    assert alone.makespan == pytest.approx(10 + 40)
    # four copies of a (a load and 1000 tokens each) on the four slots, then b on the first slot
    assert spread.makespan == pytest.approx(10 + 10 + 10 + 1)
    assert sorted(e.get("replica", 0) for e in spread.entries if e["expert"] == "a") == [0, 1, 2, 3]


def test_modeled_figures_follow_the_bandwidths(tmp_path):
    cost = make_config(tmp_path).scheduler.cost
    fig = modeled_figures(cost, params_b=7.5, can_sleep=True)
    weights = 7.5e9 * 2
    assert fig.load_s == pytest.approx(cost.engine_start_s + weights / 1.4e9 + cost.warmup_s)
    assert fig.wake_s == pytest.approx(weights / 55e9 + cost.warmup_s)
    assert modeled_figures(cost, 7.5, can_sleep=False).wake_s is None


def test_experts_behind_an_openai_server_activate_for_free(tmp_path):
    from skillmoe_ray.forecast.simulator import expert_figures

    cfg = make_config(tmp_path, ["engine=openai"])
    figures = expert_figures(cfg, {}, {name: name for name in cfg.pool}, can_sleep=False)
    assert {f.load_s for f in figures.values()} == {0.0} and {f.wake_s for f in figures.values()} == {None}


def test_estimated_work_follows_the_pipelines_rules(tmp_path):
    cfg = make_config(tmp_path)
    stages = {s.name: s for s in estimate_stages(cfg, n_val=40, n_test=30, question_tokens=50)}
    assert stages["skills"].works[0].requests == 5 * (40 + 30)
    assert all(w.requests == 40 for w in stages["profiles"].works) and len(stages["profiles"].works) == 4
    assert sum(w.requests for w in stages["inference"].works) == pytest.approx(3 * 30, abs=2)
    assert stages["aggregation"].works[0].requests == 30
    assert {w.expert for w in stages["aggregator_selection"].works} == set(cfg.aggregator_candidates())
    assert stages["profiles"].later is None and stages["aggregation"].later == ()
    assert stages["inference"].later == (stages["aggregation"].works[0].expert,)


def test_a_finished_runs_timeline_becomes_the_same_work():
    results = {
        "stages": {"skills": {"seconds": 12.0}, "mapping": {"seconds": 3.0}, "inference": {"seconds": 20.0}},
        "timeline": [
            {
                "stage": "skills",
                "expert": "k",
                "start": 0.0,
                "end": 10.0,
                "requests": 50,
                "prompt_tokens": 900,
                "output_tokens": 150,
            },
            {
                "stage": "inference",
                "expert": "a",
                "start": 15.0,
                "end": 20.0,
                "requests": 4,
                "output_tokens": 40,
            },
            {
                "stage": "inference",
                "expert": "b",
                "start": 20.0,
                "end": 34.0,
                "requests": 6,
                "output_tokens": 60,
            },
        ],
    }
    stages = stages_from_run(results)
    assert [s.name for s in stages] == ["skills", "mapping", "inference"]
    assert stages[0].works == (Work("k", 50, 900, 150),) and stages[0].cpu_seconds == pytest.approx(2.0)
    assert stages[1].works == () and stages[1].cpu_seconds == pytest.approx(3.0)
    assert stages[2].cpu_seconds == pytest.approx(1.0) and len(stages[2].works) == 2
    # before recruitment the later stages' experts are unknown; the last test-time phase needs none after it
    assert stages[0].later is None and stages[2].later == ()


def test_the_plan_includes_dsmoe_identification_for_moe_experts(tmp_path):
    cfg = make_config(tmp_path, ["steering.enabled=true", "+pool.models.tiny-qwen-b.moe=true"])
    stages = {s.name: s for s in estimate_stages(cfg, n_val=40, n_test=30, question_tokens=100)}
    assert [(w.expert, w.requests, w.output_tokens) for w in stages["steering"].works] == [
        ("tiny-qwen-b", 40, 0)
    ]
    assert "steering" not in {s.name for s in estimate_stages(make_config(tmp_path), 40, 30, 100)}


def test_sleep_unload_and_a_first_compile_are_charged_by_the_cost_model():
    from skillmoe_ray.config import CostConfig

    cost = CostConfig()
    fig = modeled_figures(cost, 7.0, can_sleep=True, compiles=True)
    assert fig.sleep_s == pytest.approx(14e9 / (cost.device_to_host_gb_per_s * 1e9))
    assert (fig.unload_s, fig.compile_s) == (cost.unload_s, cost.compile_s)
    figs = {
        "a": ExpertFigures(10.0, None, 100.0, unload_s=2.0, compile_s=60.0),
        "b": ExpertFigures(10.0, None, 100.0, unload_s=2.0, compile_s=60.0),
    }
    stages = [
        StageWork("s1", (Work("a", 1, 0, 0), Work("b", 1, 0, 0))),
        StageWork("s2", (Work("a", 1, 0, 0),)),
    ]
    entries = simulate(stages, figs, 1, deactivate="unload").entries
    # a: first load, compiles; b: a unloaded first, b compiles; a again: b unloaded, a's compile is cached
    assert [e["activation_seconds"] for e in entries] == [70.0, 72.0, 12.0]


def test_a_measured_model_is_not_charged_again_for_what_its_measure_holds(tmp_path):
    from skillmoe_ray.forecast.simulator import expert_figures

    cfg = make_config(tmp_path, ["engine=vllm"])
    names = {n: n for n in cfg.pool}
    measured = {"tiny-llama-a": {"load_seconds": 5.0}}
    figs = expert_figures(cfg, measured, names, can_sleep=True)
    measured_fig = figs["tiny-llama-a"]
    assert (measured_fig.unload_s, measured_fig.compile_s, measured_fig.sleep_s) == (0, 0, 0)
    assert figs["tiny-qwen-b"].compile_s == cfg.scheduler.cost.compile_s and figs["tiny-qwen-b"].sleep_s > 0
