"""engine.kwargs and per-model engine_kwargs: merged, passed through, checked when the config loads
(the check of vLLM's argument names against vLLM itself: tests/engine/test_engine_kwargs_real.py)."""

from __future__ import annotations

import pytest

from skillmoe_ray.engines import create_engine, model_fingerprint
from skillmoe_ray.errors import ConfigError
from tests.conftest import make_config


def test_a_models_engine_kwargs_override_the_global_ones_key_by_key(tmp_path):
    cfg = make_config(tmp_path, ["+engine.kwargs={quantization: awq, tokenizer_mode: auto}",
                                 "+pool.models.tiny-qwen-b.engine_kwargs={tokenizer_mode: mistral}"])
    assert cfg.engine.kwargs_for(cfg.pool["tiny-qwen-b"]) == {"quantization": "awq",
                                                              "tokenizer_mode": "mistral"}
    assert create_engine(cfg.engine, cfg.pool["tiny-llama-a"]).kwargs == {
        "quantization": "awq",
        "tokenizer_mode": "auto",
    }


def test_kwargs_join_the_fingerprint_only_where_given(tmp_path):
    plain = make_config(tmp_path)
    tuned = make_config(tmp_path, ["+pool.models.tiny-qwen-b.engine_kwargs={quantization: fp8}"])
    for name in ("tiny-llama-a", "tiny-qwen-b"):
        same = model_fingerprint(plain.pool[name], plain.engine) == model_fingerprint(
            tuned.pool[name], tuned.engine
        )
        assert same == (name == "tiny-llama-a")


@pytest.mark.parametrize(
    "engine, key, hint",
    [
        ("vllm", "dtype", "engine.dtype"),
        ("vllm", "gpu_memory_utilization", "engine.options.gpu_memory_utilization"),
        ("hf", "attn_implementation", "engine.options.attn_implementation"),
        ("openai", "temperature", "the stage's temperature"),
    ],
)
def test_arguments_the_project_sets_are_refused_naming_the_key_that_sets_them(tmp_path, engine, key, hint):
    with pytest.raises(ConfigError, match=rf"^engine.kwargs.{key}: set by the project.*use {hint}"):
        make_config(tmp_path, [f"engine={engine}", f"+engine.kwargs={{{key}: 1}}"])


def test_hf_and_openai_kwargs_pass_any_other_name(tmp_path):
    hf = make_config(tmp_path, ["engine=hf", "+engine.kwargs={low_cpu_mem_usage: true}"])
    assert hf.engine.kwargs == {"low_cpu_mem_usage": True}
    remote = make_config(tmp_path, ["engine=openai", "+pool.models.tiny-llama-a.engine_kwargs={top_k: 20}"])
    assert create_engine(remote.engine, remote.pool["tiny-llama-a"]).kwargs == {"top_k": 20}


def test_kwargs_must_be_a_mapping_and_engines_without_pass_through_refuse_them(tmp_path):
    with pytest.raises(ConfigError, match=r"engine.kwargs must be a mapping"):
        make_config(tmp_path, ["++engine.kwargs=3"])
    with pytest.raises(ConfigError, match=r"pool.models.tiny-llama-a.engine_kwargs must be a mapping"):
        make_config(tmp_path, ["+pool.models.tiny-llama-a.engine_kwargs=[a]"])
    from skillmoe_ray.engines.base import Engine

    with pytest.raises(
        ConfigError, match=r"engine.kwargs.x: the base engine takes no pass-through arguments"
    ):
        Engine.check_kwargs({"x": 1}, "engine.kwargs")
