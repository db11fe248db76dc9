"""Model sizes the benchmarks build: ``tiny`` for CPU runs and tests, ``h128`` (head dimension 128, 0.5B) for
the vLLM GPU check, ``7b`` with Llama-2-7B's shapes.

A preset is a demo recipe (see :mod:`skillmoe_ray.demo`), so its weights are random but built the
demo's way: the locally trained word tokenizer, seeded weights, nothing downloaded. The 7b preset
pads the embedding to Llama-2's 32000 rows so the weight bytes (about 13.5 GB in bfloat16) are
those of a real 7B model, and draws them in bfloat16 on the bench's device: a float32 CPU copy
would need 27 GB and minutes.
"""

from __future__ import annotations

from skillmoe_ray.demo import model_config

LLAMA2_7B = {
    "arch": "llama",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "head_dim": 128,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
}
# A small model of real attention shape (head dimension 128, grouped KV heads as in Llama-3), about 0.5B
# parameters (1 GB in bfloat16): the GPU check's vLLM experts, two of which share one GPU
H128 = {
    "arch": "llama",
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "layers": 8,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
}
PRESETS = {"tiny": {"arch": "llama", "hidden_size": 128, "layers": 2}, "h128": H128, "7b": LLAMA2_7B}


def preset_recipe(preset: str, device: str = "cpu", seed: int = 100) -> dict:
    """The demo recipe of one weight set of ``preset``; real-sized ones are drawn in bfloat16 on
    ``device``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    recipe = {**PRESETS[preset], "seed": seed}
    if preset != "tiny":
        recipe.update(device="cuda" if device.startswith("cuda") else "cpu", dtype="bfloat16")
    return recipe


def parameter_count(recipe: dict, tokenizer_size: int = 1000) -> int:
    """Parameters of the model a recipe builds, counted on the meta device (no memory, well under a
    second)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = model_config(recipe.get("arch", "llama"), tokenizer_size, recipe)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    return sum(p.numel() for p in model.parameters())


def resolve_device(device: str) -> str:
    """``auto`` becomes cuda when a GPU is visible, else cpu; cpu and cuda[:N] pass through."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise ValueError(f"--device {device!r}: expected cpu, cuda or auto")
    return device


def engine_dtype(device: str) -> str:
    """bfloat16 on a GPU; float32 on the CPU, where bfloat16 matmuls are slow or unsupported."""
    return "float32" if device == "cpu" else "bfloat16"
