"""Bench model presets and the demo's optional size keys: shapes, parameter count, unchanged defaults."""

from __future__ import annotations

import pytest

from skillmoe_ray.bench.presets import parameter_count, preset_recipe
from skillmoe_ray.bench.schedule import link_tree
from skillmoe_ray.demo import build_device, model_config
from skillmoe_ray.errors import ConfigError


def old_model_config(arch: str, vocab_size: int, recipe: dict):
    """model_config as it was before the size keys, kept here as the reference the defaults must match."""
    import transformers

    classes = {"llama": "LlamaConfig", "qwen3": "Qwen3Config", "mistral": "MistralConfig"}
    hidden = recipe.get("hidden_size", 128)
    return getattr(transformers, classes[arch])(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=recipe.get("intermediate_size", 2 * hidden),
        num_hidden_layers=recipe.get("layers", 2),
        num_attention_heads=hidden // 32,
        num_key_value_heads=max(1, hidden // 64),
        head_dim=32,
        max_position_embeddings=recipe.get("max_position_embeddings", 2048),
        initializer_range=recipe.get("initializer_range", 1.0),
        tie_word_embeddings=False,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=1,
    )


@pytest.mark.parametrize(
    "arch,recipe",
    [
        ("llama", {"seed": 1}),
        ("qwen3", {"hidden_size": 96, "layers": 1}),
        ("mistral", {"hidden_size": 192, "intermediate_size": 100, "initializer_range": 0.5}),
    ],
)
def test_recipe_without_new_keys_gives_the_old_config(arch, recipe):
    assert model_config(arch, 321, recipe).to_dict() == old_model_config(arch, 321, recipe).to_dict()


def test_7b_preset_has_llama2_7b_shapes():
    recipe = preset_recipe("7b", "cuda")
    cfg = model_config("llama", 600, recipe)
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers) == (4096, 11008, 32)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (32, 32, 128)
    assert cfg.vocab_size == 32000  # padded past the word tokenizer's vocabulary
    assert (recipe["device"], recipe["dtype"]) == ("cuda", "bfloat16")
    assert preset_recipe("7b", "cpu")["device"] == "cpu"


def test_7b_preset_has_about_6_7e9_parameters():
    assert parameter_count(preset_recipe("7b")) == pytest.approx(6.74e9, rel=0.01)


def test_tiny_preset_keeps_the_demo_recipe_keys():
    assert set(preset_recipe("tiny")) == {"arch", "hidden_size", "layers", "seed"}


def test_bad_size_keys_are_named():
    with pytest.raises(ConfigError, match="vocab_size 10"):
        model_config("llama", 321, {"vocab_size": 10})
    with pytest.raises(ConfigError, match="'tpu'"):
        build_device({"device": "tpu"})
    with pytest.raises(ValueError, match="'13b'"):
        preset_recipe("13b")


def test_link_tree_falls_back_to_symlinks(tmp_path, monkeypatch):
    base = tmp_path / "base"
    base.mkdir()
    (base / "model.safetensors").write_bytes(b"weights")

    def no_hardlinks(src, dst):
        raise OSError("cross-device link")

    monkeypatch.setattr("os.link", no_hardlinks)
    assert link_tree(base, tmp_path / "e0") == "symlink"
    assert (tmp_path / "e0" / "model.safetensors").is_symlink()
    assert (tmp_path / "e0" / "model.safetensors").read_bytes() == b"weights"
