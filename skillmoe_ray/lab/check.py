"""How well the lab's trained models do their jobs: per-skill accuracy of each model, greedy decoding.

Used by ``python -m skillmoe_ray.lab --check`` and the lab's tests; runs transformers in-process (a
95k-parameter model answers a hundred questions in a second).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from skillmoe_ray.data.instances import Instance
from skillmoe_ray.lab import examples as ex
from skillmoe_ray.method.aggregate import expert_messages, extract_answer, is_correct
from skillmoe_ray.method.skills import keyword_messages, parse_keywords


def generate(model_dir: Path, conversations: Sequence[list[dict]], max_new_tokens: int = 16,
             batch: int = 64, temperature: float = 0.0) -> list[str]:
    """Replies of the model in ``model_dir`` to each conversation: greedy, or sampled at ``temperature``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    replies = []
    for start in range(0, len(conversations), batch):
        prompts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                   for c in conversations[start : start + batch]]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            sampling = {"do_sample": temperature > 0}
            if temperature > 0:
                sampling["temperature"] = temperature
            out = model.generate(**enc, max_new_tokens=max_new_tokens, **sampling,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        width = enc["input_ids"].shape[1]
        replies += [tokenizer.decode(row[width:], skip_special_tokens=True) for row in out]
    return replies


def _by_skill(instances: Sequence[Instance], hits: Sequence[bool]) -> dict[str, float]:
    groups: dict[str, list[bool]] = defaultdict(list)
    for inst, hit in zip(instances, hits):
        groups[inst.subject].append(hit)
    return {skill: round(sum(h) / len(h), 3) for skill, h in sorted(groups.items())}


def expert_accuracy(model_dir: Path, instances: Sequence[Instance]) -> dict[str, float]:
    """Accuracy per gold skill of an expert's answers."""
    replies = generate(model_dir, [expert_messages(i) for i in instances])
    return _by_skill(instances, [is_correct(extract_answer(r, i), i) for r, i in zip(replies, instances)])


def keyword_accuracy(model_dir: Path, instances: Sequence[Instance]) -> dict[str, float]:
    """Share of questions, per gold skill, whose reply names exactly the gold skill."""
    replies = generate(model_dir, [keyword_messages(i) for i in instances])
    return _by_skill(instances, [parse_keywords(r) == [i.subject] for r, i in zip(replies, instances)])


def keyword_sample_accuracy(model_dir: Path, instances: Sequence[Instance], samples: int = 5,
                            temperature: float = 0.7, seed: int = 0) -> dict[str, float]:
    """Share of single replies sampled at ``temperature`` (the skill stage's), per gold skill, that name
    exactly the gold skill: how often one annotation sample is right, before the stage's vote."""
    import torch

    torch.manual_seed(seed)
    repeated = [inst for inst in instances for _ in range(samples)]
    replies = generate(model_dir, [keyword_messages(i) for i in repeated], temperature=temperature)
    return _by_skill(repeated, [parse_keywords(r) == [i.subject] for r, i in zip(replies, repeated)])


def aggregator_accuracy(model_dir: Path, instances: Sequence[Instance], seed: int = 0) -> dict[str, float]:
    """Share of drawn candidate sets, per gold skill, whose majority answer the aggregator states."""
    rng = random.Random(seed)
    prompts, targets, kept = [], [], []
    for inst in instances:
        case = ex.aggregation_case(inst, rng)
        if case is not None:
            prompts.append(case[0])
            targets.append(case[1])
            kept.append(inst)
    replies = generate(model_dir, prompts)
    return _by_skill(kept, [extract_answer(r, i) == t for r, i, t in zip(replies, kept, targets)])


CHECKS = {"expert": expert_accuracy, "keyword": keyword_accuracy, "aggregator": aggregator_accuracy}
