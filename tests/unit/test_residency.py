"""Co-residency: the eviction rule, footprints, and the executor and simulator following them."""

from __future__ import annotations

import pytest

from skillmoe_ray.config import CostConfig, EngineConfig, ModelSpec
from skillmoe_ray.forecast.simulator import ExpertFigures, StageWork, Work, simulate
from skillmoe_ray.scheduling import residency
from skillmoe_ray.scheduling.executor import SlotExecutor
from skillmoe_ray.scheduling.handles import LocalExpert
from skillmoe_ray.scheduling.policy import ExecutionPolicy
from skillmoe_ray.scheduling.residency import (
    evictions,
    footprint,
    slot_memory_bytes,
    touch,
    weight_bytes_on_disk,
)
from tests.unit.test_executor import CountingEngine, groups

SIZES = {"a": 4.0, "b": 4.0, "c": 4.0, "d": 4.0, "big": 20.0}


def test_touch_moves_a_resident_to_most_recently_used():
    residents = ["a", "b", "c"]
    assert touch(residents, "a") and residents == ["b", "c", "a"]
    assert not touch(residents, "d") and residents == ["b", "c", "a"]


def test_without_a_known_gpu_memory_every_resident_goes():
    assert evictions(["a", "b"], SIZES, "c", None) == ["a", "b"]


def test_nothing_is_evicted_when_the_incoming_expert_fits():
    assert evictions(["a", "b"], SIZES, "c", capacity=12.0) == []


def test_least_recently_used_goes_first():
    assert evictions(["a", "b"], SIZES, "c", capacity=8.0) == ["a"]


def test_experts_needed_later_are_evicted_last():
    assert evictions(["a", "b"], SIZES, "c", capacity=8.0, keep={"a"}) == ["b"]
    assert evictions(["a", "b"], SIZES, "c", capacity=4.0, keep={"a"}) == ["b", "a"]


def test_online_the_higher_ranked_stay_and_the_plan_still_comes_first():
    rank = {"a": float("inf"), "b": 3.0}  # a: the aggregator; b: recruited 3 times recently
    assert evictions(["a", "b", "c"], SIZES, "d", capacity=12.0, rank=rank) == ["c"]
    assert evictions(["a", "b", "c"], SIZES, "d", capacity=8.0, rank=rank) == ["c", "b"]
    assert evictions(["a", "b", "c"], SIZES, "d", capacity=12.0, keep={"c"}, rank=rank) == ["b"]


def test_the_slot_budget_defaults_from_the_machine_and_the_override_and_single_win(monkeypatch):
    monkeypatch.setattr(residency, "machine_memory", lambda: ("cpu", 64e9))
    assert slot_memory_bytes(None, "budget", 2) == 64e9 * residency.HOST_RAM_SHARE / 2
    assert slot_memory_bytes(8.0, "budget", 2) == 8e9
    assert slot_memory_bytes(8.0, "single", 2) is None
    monkeypatch.setattr(residency, "machine_memory", lambda: ("cuda", 80e9))
    assert slot_memory_bytes(None, "budget", 4) == 80e9  # each slot is one GPU
    monkeypatch.setattr(residency, "machine_memory", lambda: None)
    assert slot_memory_bytes(None, "budget", 1) is None


def test_on_the_cpu_a_vllm_model_holds_its_weights_and_its_kv_space(monkeypatch):
    monkeypatch.setattr(residency, "machine_memory", lambda: ("cpu", 64e9))
    vllm = EngineConfig("vllm", options={"gpu_memory_utilization": 0.05, "cpu_kvcache_gb": 1})
    spec = ModelSpec(name="m", path="org/m", params_b=0.0001)
    assert footprint(spec, vllm, None, CostConfig(), 1.2, weight_bytes=1e6) == pytest.approx(1.2e6 + 2**30)


def test_a_budget_override_on_the_cpu_counts_host_ram_but_a_plan_there_models_a_gpu(tmp_path, monkeypatch):
    """``resources.gpu_memory_gb`` on a machine without a GPU sizes the RAM budget of a run (vLLM's CPU engine
    reserves ``cpu_kvcache_gb``); in mode=plan it stands for the GPU planned for (a share of its memory)."""
    from skillmoe_ray.scheduling.residency import footprints_from_config
    from tests.conftest import make_config

    monkeypatch.setattr(residency, "machine_memory", lambda: ("cpu", 64e9))
    cfg = make_config(tmp_path, ["engine=vllm_cpu", "resources.gpu_memory_gb=40"])
    name = next(iter(cfg.pool))
    run = footprints_from_config(cfg)(name, 10**6)
    plan = footprints_from_config(cfg, planning=True)(name, 10**6)
    assert run == pytest.approx(10**6 * cfg.scheduler.memory_headroom + 2**30)
    share = cfg.engine.options["gpu_memory_utilization"]
    assert plan == pytest.approx(share * 40 * residency.GB)  # its share of the GPU planned for
    spec = ModelSpec(name="m", path="org/m", params_b=0.0001)
    vllm = EngineConfig("vllm", options={"gpu_memory_utilization": 0.4, "cpu_kvcache_gb": 1})
    in_ram = footprint(spec, vllm, 80.0, CostConfig(), 1.2, 1e6, in_host_ram=True)
    assert in_ram == pytest.approx(1.2e6 + 2**30)
    assert footprint(spec, vllm, 80.0, CostConfig(), 1.2, 1e6) == pytest.approx(32e9)


def test_an_expert_larger_than_the_slot_runs_alone():
    assert evictions(["a", "b"], SIZES, "big", capacity=10.0) == ["a", "b"]


def test_vllm_footprint_is_its_reserved_share_and_others_scale_the_weights():
    cost = CostConfig()
    spec = ModelSpec(name="m", path="org/m", params_b=7.0)
    vllm = EngineConfig("vllm", options={"gpu_memory_utilization": 0.4})
    assert footprint(spec, vllm, 80.0, cost, 1.2) == pytest.approx(32e9)
    hf = EngineConfig("hf")
    assert footprint(spec, hf, 80.0, cost, 1.2) == pytest.approx(7e9 * cost.bytes_per_param * 1.2)
    assert footprint(spec, hf, 80.0, cost, 1.5, weight_bytes=10e9) == pytest.approx(15e9)


def test_weights_on_disk_are_the_safetensors_files(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x" * 100)
    (tmp_path / "config.json").write_text("{}")
    assert weight_bytes_on_disk(ModelSpec(name="m", path=str(tmp_path))) == 100
    assert weight_bytes_on_disk(ModelSpec(name="m", path="org/not-here")) == 0


def co_resident_executor(gpu_memory_bytes):
    """CountingEngine experts weigh 10 bytes each once loaded; before that, 10 bytes are assumed."""
    CountingEngine.calls = []
    CountingEngine.sleepable = True
    return SlotExecutor(
        lambda name, slot=0: LocalExpert(CountingEngine(ModelSpec(name=name, path=f"fake/{name}"))),
        ExecutionPolicy(gpu_memory_bytes=gpu_memory_bytes,
                        footprint=lambda expert, weight_bytes: float(weight_bytes or 10)),
    )


@pytest.mark.parametrize("gpu_memory_bytes, activations", [(None, 5), (30, 3), (20, 4)])
def test_co_resident_experts_are_reused_across_stages(gpu_memory_bytes, activations):
    ex = co_resident_executor(gpu_memory_bytes)
    for stage in ("s1", "s2"):
        ex.run_stage(stage, groups("a", "b", "c"), [], lambda g, o, t: None)
    assert sum(ex.activations.values()) == activations
    assert len(ex.resident_experts()) == (1 if gpu_memory_bytes is None else gpu_memory_bytes // 10)
    spans = sorted((t.start, t.end) for t in ex.timeline)
    assert all(prev[1] <= nxt[0] for prev, nxt in zip(spans, spans[1:])), "one expert generates at a time"


def test_co_residency_keeps_the_expert_the_next_stage_needs():
    ex = co_resident_executor(20)
    ex.run_stage("s1", groups("a", "b", "c"), ["a"], lambda g, o, t: None)
    assert "a" in ex.resident_experts()
    ex.run_stage("s2", groups("a"), [], lambda g, o, t: None)
    assert ex.timeline[-1].kind == "resident"


@pytest.mark.parametrize("gpu_memory_bytes, activations", [(None, 5), (30, 3), (20, 4)])
def test_the_simulator_predicts_the_executors_activations(gpu_memory_bytes, activations):
    figures = {e: ExpertFigures(10.0, 1.0, 100.0, weight_bytes=10.0, footprint_bytes=10.0) for e in "abc"}
    stage = tuple(Work(e, 2, 10, 16) for e in "abc")
    sim = simulate([StageWork("s1", stage), StageWork("s2", stage)], figures, 1,
                   gpu_memory_bytes=gpu_memory_bytes)
    ex = co_resident_executor(gpu_memory_bytes)
    for name in ("s1", "s2"):
        ex.run_stage(name, groups("a", "b", "c"), [], lambda g, o, t: None)
    assert sim.activations == activations == sum(ex.activations.values())
    assert [(e["expert"], e["kind"]) for e in sim.entries] == [(t.expert, t.kind) for t in ex.timeline]


def test_the_warm_up_starts_the_models_that_do_not_fit_and_their_first_use_only_loads():
    """Serving's warm-up loads what fits and starts the rest (a Ray expert: its process, engine imported)
    without their weights, so a first use pays a load and no process start."""
    opened = []
    ex = co_resident_executor(20)
    open_expert = ex.slots.open_expert
    ex.slots.open_expert = lambda name, slot: opened.append(name) or open_expert(name, slot)
    assert ex.warm(["a", "b", "c", "d"]) == ["a", "b"]
    assert opened == ["a", "b", "c", "d"]  # c and d started
    assert [call for call in CountingEngine.calls if call[0] == "load"] == [("load", "a"), ("load", "b")]
    ex.run_stage("s1", groups("c"), [], lambda g, o, t: None)
    assert opened == ["a", "b", "c", "d"] and ex.timeline[-1].kind == "load"  # the started handle loads


def test_on_the_cpu_an_evicted_transformers_model_unloads_instead_of_sleeping():
    """A sleep keeps a CPU model's weights in the same host RAM, so it would free nothing of the budget."""
    from skillmoe_ray.engines.hf_engine import HFEngine

    engine = HFEngine(ModelSpec(name="m", path="unused"), {}, "bfloat16")
    engine.device = "cpu"
    assert not engine.can_sleep
    engine.device = "cuda:0"
    assert engine.can_sleep
    assert not HFEngine.sleeps_with({"device": "cpu"}) and HFEngine.sleeps_with({"device": "auto"})


def test_online_a_micro_batch_leaves_its_most_recruited_experts_resident():
    ex = co_resident_executor(20)  # two models fit
    ex.slots.rank = {"a": 5.0, "b": 1.0, "c": 3.0}  # recent recruitment counts (the online router's)
    ex.run_stage("s1", groups("a", "b", "c"), [], lambda g, o, t: None)
    assert sorted(ex.resident_experts()) == ["a", "c"] and sum(ex.activations.values()) == 3
