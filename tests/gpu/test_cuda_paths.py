"""CUDA code paths of the transformers engine and the executor, on a tiny random-weight model.

They are skipped without a CUDA GPU (CI, the 2-core machine). On a GPU machine they are the first
thing ``jobs/gpu_bench.sh`` runs (``check``, about a minute), so a broken CUDA path shows up before
the long benchmarks spend the machine's time:

    python3 -m pytest -q -m gpu tests/gpu
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def engine_for(model_dir, name="tiny", dtype="bfloat16"):
    from skillmoe_ray.config import ModelSpec
    from skillmoe_ray.engines.hf_engine import HFEngine

    return HFEngine(ModelSpec(name=name, path=str(model_dir)), {"device": "cuda", "batch_size": 4}, dtype)


def greedy(text: str, seed: int = 0, temperature: float = 0.0):
    from skillmoe_ray.engines.base import GenRequest, Sampling

    return GenRequest.make([{"role": "user", "content": text}], Sampling(12, temperature, 1.0, seed))


def test_sleep_parks_weights_in_pinned_host_memory_and_wake_restores_the_same_outputs(tiny_model_dir):
    engine = engine_for(tiny_model_dir)
    engine.load()
    try:
        before = engine.generate([greedy("Which enzyme digests starch?")])[0].text
        probe = engine.probe()["text"]
        on_gpu = torch.cuda.memory_allocated()
        engine.sleep()
        params = list(engine.model.parameters())
        assert all(p.device.type == "cpu" and p.is_pinned() for p in params)
        freed = on_gpu - torch.cuda.memory_allocated()
        assert freed >= 0.9 * engine.info.weight_bytes, (freed, engine.info.weight_bytes)
        engine.wake()
        assert all(p.device.type == "cuda" for p in engine.model.parameters())
        assert engine.generate([greedy("Which enzyme digests starch?")])[0].text == before
        assert engine.probe()["text"] == probe
    finally:
        engine.unload()


def test_seeded_sampling_on_cuda_is_independent_of_the_batch(tiny_model_dir):
    engine = engine_for(tiny_model_dir)
    engine.load()
    try:
        alone = engine.generate([greedy("Name a skill", seed=7, temperature=0.8)])[0].text
        batch = engine.generate([greedy("A longer question about genetics?", seed=3, temperature=0.8),
                                 greedy("Name a skill", seed=7, temperature=0.8)])
        assert batch[1].text == alone
    finally:
        engine.unload()


def test_weights_load_straight_onto_the_gpu_where_accelerate_is_installed(tiny_model_dir):
    pytest.importorskip("accelerate")
    baseline = torch.cuda.memory_allocated()
    engine = engine_for(tiny_model_dir)
    engine.load()
    try:
        assert engine._placement() == {"device_map": "cuda"}
        assert {p.device.type for p in engine.model.parameters()} == {"cuda"}
        assert engine.info.device == "cuda"
    finally:
        engine.unload()
    assert torch.cuda.memory_allocated() <= baseline + 1e6  # the unload released the weights


def test_the_executor_wakes_experts_on_cuda_and_their_probes_pass(tiny_model_dir):
    from skillmoe_ray.scheduling.executor import SlotExecutor
    from skillmoe_ray.scheduling.grouping import ExpertGroup
    from skillmoe_ray.scheduling.handles import LocalExpert

    ex = SlotExecutor(lambda name, slot=0: LocalExpert(engine_for(tiny_model_dir, name)))
    try:
        def group(expert):
            return ExpertGroup(expert, [greedy(f"Question {expert}{i}?") for i in range(3)])

        ex.run_stage("s1", [group("a"), group("b")], [], lambda g, o, t: None)
        ex.run_stage("s2", [group("a")], [], lambda g, o, t: None)
        kinds = [(t.expert, t.kind) for t in ex.timeline]
        assert kinds[-1] == ("a", "wake"), kinds  # a reload would mean the probe after the wake failed
        assert "warmup_probe" in ex.timeline[-1].phases and "wake" in ex.timeline[-1].phases
        assert ex.summary().deactivations["sleep"] >= 1
    finally:
        ex.close()


def test_the_activation_benchmark_measures_sleep_and_wake_on_cuda(tmp_path):
    from skillmoe_ray.bench import activation

    result = activation.main(["--preset", "tiny", "--device", "cuda", "--repeats", "1",
                              "--models-dir", str(tmp_path), "--json", str(tmp_path / "a.json")])
    for phase in ("load_cold", "load_page_cache", "sleep", "wake", "first_request_after_wake"):
        assert result["phases"][phase]["seconds"] is not None, phase
    assert (tmp_path / "a.json").is_file()


def test_dsmoe_steering_and_routing_statistics_on_cuda(tmp_path):
    from dataclasses import replace

    from skillmoe_ray.config import DemoConfig
    from skillmoe_ray.demo import ensure_demo_models
    from skillmoe_ray.engines.base import Steering

    ensure_demo_models(DemoConfig(True, str(tmp_path), {"moe": {"arch": "qwen3_moe", "seed": 3}}))
    engine = engine_for(tmp_path / "moe", "moe")
    engine.load()
    try:
        steering = Steering(50.0, tuple((layer, e) for layer in range(2) for e in (0, 1)))
        stats = engine.generate([replace(greedy("Which enzyme digests starch?"), analyze=True,
                                         steering=steering)])[0]
        assert all(row[:2] == [1.0, 1.0] for row in stats.router["counts"])
        plain = engine.generate([greedy("Which enzyme digests starch?")])[0].text
        steered = engine.generate([replace(greedy("Which enzyme digests starch?"),
                                           steering=steering)])[0].text
        assert steered != plain
    finally:
        engine.unload()
