"""Offline demo pool: a locally trained tokenizer and tiny random-weight models built from configs.

Nothing is downloaded. The tokenizer is a word-level vocabulary trained on the project's own demo
question set, so random models emit words rather than byte fragments; each model is a small
decoder (Llama, Qwen3, Mistral,
         or Qwen3-MoE for steering tests) with random weights from a seeded initializer.
Accuracy with random weights means nothing; every stage's mechanics are real.

Weights are drawn with a larger initializer range than training would use, so that a model's
next-token distribution is peaked: sampled replies then repeat across samples often enough for
the keyword vote (at least 2 of 5) to keep some keywords.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from skillmoe_ray.config import DemoConfig
from skillmoe_ray.data import demo_data_path
from skillmoe_ray.errors import ConfigError

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<unk>", "<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
# Words the prompts and answer formats use, so the vocabulary covers them.
FORMAT_WORDS = (
    "Skills : , ; The answer is ( A ) ( B ) ( C ) ( D ) A B C D \\boxed { } Question Options Solution "
    "step by step reasoning final therefore so"
)
# Not qwen2: transformers 5 swaps in its byte-level Qwen2Tokenizer for qwen2 models whatever the
# model's tokenizer files say, which breaks the word-level demo vocabulary.
ARCHITECTURES = ("llama", "qwen3", "mistral", "qwen3_moe")
DONE_MARKER = ".built"
RECIPE_VERSION = 2  # bump when the builder changes, so existing demo models are rebuilt


def corpus_lines() -> list[str]:
    """Text the demo tokenizer is trained on: the demo questions, their options and answers."""
    lines = [FORMAT_WORDS]
    for name in ("val.jsonl", "test.jsonl"):
        for line in demo_data_path(name).read_text().splitlines():
            row = json.loads(line)
            lines += [row["question"], *row.get("choices", []), str(row["gold_answer"])]
    return lines


def build_tokenizer(out_dir: Path):
    """Train a word-level tokenizer on the demo corpus and save it as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    # Word-level vocabularies have no decoder of their own; WordPiece's puts spaces between words,
    # also in vLLM's incremental detokenizer.
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS, min_frequency=1)
    tok.train_from_iterator(corpus_lines(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out_dir)
    return fast


def model_config(arch: str, vocab_size: int, recipe: dict):
    """The config of the given architecture; by default tiny (head dimension 32, as vLLM's CPU kernels need).

    Optional recipe keys size it up to a real model's shapes: ``hidden_size``, ``intermediate_size``,
    ``layers``, ``head_dim``, ``num_attention_heads``, ``num_key_value_heads`` and ``vocab_size`` (at least
    the tokenizer's; the extra embedding rows only make the weight bytes realistic); ``initializer_range``
    and ``tie_word_embeddings`` serve models that are trained (the skill lab). Left out, each
    has the value the demo always used, so existing recipes give the same config.
    """
    import transformers

    classes = {"llama": "LlamaConfig", "qwen3": "Qwen3Config", "mistral": "MistralConfig",
               "qwen3_moe": "Qwen3MoeConfig"}
    if arch not in classes:
        raise ConfigError(f"demo.models: unknown architecture {arch!r}; valid: {', '.join(ARCHITECTURES)}")
    hidden = recipe.get("hidden_size", 128)
    head_dim = recipe.get("head_dim", 32)
    heads = recipe.get("num_attention_heads", hidden // head_dim)
    vocab = recipe.get("vocab_size", vocab_size)
    if vocab < vocab_size:
        raise ConfigError(
            f"demo.models: vocab_size {vocab} is smaller than the tokenizer's {vocab_size} tokens"
        )
    # MoE architectures (DSMoE steering tests): ``num_experts`` routed experts, 2 per token
    moe = (
        {
            "num_experts": recipe.get("num_experts", 8),
            "num_experts_per_tok": 2,
            "moe_intermediate_size": hidden,
            "norm_topk_prob": True,
        }
        if arch.endswith("_moe")
        else {}
    )
    return getattr(transformers, classes[arch])(
        **moe,
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=recipe.get("intermediate_size", 2 * hidden),
        num_hidden_layers=recipe.get("layers", 2),
        num_attention_heads=heads,
        num_key_value_heads=recipe.get("num_key_value_heads", max(1, heads // 2)),
        head_dim=head_dim,
        max_position_embeddings=recipe.get("max_position_embeddings", 2048),
        initializer_range=recipe.get("initializer_range", 1.0),
        tie_word_embeddings=recipe.get("tie_word_embeddings", False),
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=1,
    )


BUILD_DTYPES = ("float32", "bfloat16", "float16")


def build_device(recipe: dict) -> str:
    """Where the recipe's weights are drawn (``device``: cpu by default, or cuda for big models)."""
    import torch

    device = recipe.get("device", "cpu")
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise ConfigError(f"demo.models: device {device!r} is not cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"demo.models: device {device!r} asked for, but no CUDA GPU is available here")
    return device


def build_model(out_dir: Path, recipe: dict, tokenizer) -> None:
    """Save a random-weight model (seeded, saved as bfloat16) with the shared tokenizer into ``out_dir``.

    The weights are drawn on the recipe's ``device`` in its ``dtype`` (cpu and float32 by default):
    a 7B-sized model built as bfloat16 on the GPU takes seconds and needs no 27 GB float32 copy.
    """
    import torch
    from transformers import AutoModelForCausalLM

    dtype = recipe.get("dtype", "float32")
    if dtype not in BUILD_DTYPES:
        raise ConfigError(f"demo.models: dtype {dtype!r} is not one of {', '.join(BUILD_DTYPES)}")
    config = model_config(recipe.get("arch", "llama"), len(tokenizer), recipe)
    torch.manual_seed(int(recipe.get("seed", 0)))
    with torch.device(build_device(recipe)):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        head.mul_(float(recipe.get("logit_scale", 1.0)))
        # Padding rows have no token: a zero logit keeps them below the peaked real logits.
        head[len(tokenizer) :].zero_()
    model.to(torch.bfloat16).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    model.generation_config.save_pretrained(out_dir)
    (out_dir / DONE_MARKER).write_text(json.dumps({**recipe, "version": RECIPE_VERSION}, sort_keys=True))
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def ensure_demo_models(demo: DemoConfig) -> list[Path]:
    """Build every demo model that is missing or was built from a different recipe."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    root = Path(demo.models_dir).expanduser()
    tokenizer = None
    built = []
    for name, recipe in demo.models.items():
        out = root / name
        marker = out / DONE_MARKER
        if marker.is_file() and json.loads(marker.read_text()) == {**recipe, "version": RECIPE_VERSION}:
            continue
        if tokenizer is None:
            tokenizer = build_tokenizer(root / "_tokenizer")
        log.info("building demo model %s (%s)", name, recipe.get("arch", "llama"))
        out.mkdir(parents=True, exist_ok=True)
        marker.unlink(missing_ok=True)
        build_model(out, dict(recipe), tokenizer)
        built.append(out)
    return built
