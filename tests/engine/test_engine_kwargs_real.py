"""engine.kwargs with the real backends: vLLM's names checked against its EngineArgs when the config loads,
and the arguments reaching the engine vLLM builds and the model transformers loads."""

from __future__ import annotations

import pytest

from skillmoe_ray.config import ModelSpec
from skillmoe_ray.engines.vllm_engine import VLLMEngine, engine_arg_names
from skillmoe_ray.errors import ConfigError
from tests.conftest import make_config

pytestmark = pytest.mark.engine

CPU_OPTIONS = {"enforce_eager": True, "gpu_memory_utilization": 0.05, "cpu_kvcache_gb": 1, "max_num_seqs": 4}


def test_vllm_engine_arguments_pass_and_a_misspelt_one_fails_naming_the_closest(tmp_path):
    assert engine_arg_names() is not None and "quantization" in engine_arg_names()
    cfg = make_config(
        tmp_path,
        [
            "engine=vllm",
            "+engine.kwargs={quantization: awq}",
            "+pool.models.tiny-qwen-b.engine_kwargs={tokenizer_mode: mistral, max_logprobs: 5}",
        ],
    )
    assert cfg.pool["tiny-qwen-b"].engine_kwargs["max_logprobs"] == 5
    with pytest.raises(ConfigError) as err:
        make_config(tmp_path, ["engine=vllm", "+pool.models.tiny-qwen-b.engine_kwargs={quantisation: awq}"])
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(
        "pool.models.tiny-qwen-b.engine_kwargs.quantisation: not a vLLM engine argument"
    )
    assert "closest: quantization" in message


def test_a_pass_through_argument_reaches_the_engine_vllm_builds(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine sets it; restored afterwards
    spec = ModelSpec(
        name="tiny", path=str(tiny_model_dir), max_model_len=512, engine_kwargs={"max_logprobs": 3}
    )
    eng = VLLMEngine(spec, CPU_OPTIONS, kwargs={"served_model_name": "tiny-x", **spec.engine_kwargs})
    eng.load()
    try:
        config = eng.llm.llm_engine.vllm_config
        assert config.model_config.max_logprobs == 3 and config.model_config.served_model_name == "tiny-x"
        assert config.model_config.enforce_eager  # the project's own options still apply beside them
    finally:
        eng.unload()


def test_a_from_pretrained_argument_reaches_the_transformers_model(tiny_model_dir):
    from skillmoe_ray.engines.hf_engine import HFEngine

    eng = HFEngine(
        ModelSpec(name="tiny", path=str(tiny_model_dir)),
        {"device": "cpu"},
        "float32",
        kwargs={"use_cache": False},
    )  # a config attribute set through from_pretrained
    eng.load()
    try:
        assert eng.model.config.use_cache is False
    finally:
        eng.unload()
