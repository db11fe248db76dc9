"""Training one tiny causal LM on (prompt, response) examples: the skill lab's own training loop.

Plain PyTorch over a transformers model built from a config (so the result saves and loads like any
hub model, in vLLM and transformers alike): AdamW, fixed-size random batches, loss on the response
tokens only, one CPU thread (two trainings side by side use both cores of a small machine).
Seeded throughout, so the same recipe gives the same weights.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

IGNORE = -100  # label of prompt and padding positions: no loss there


@dataclass(frozen=True)
class TrainSettings:
    """Optimization settings of one training."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 4e-3
    weight_decay: float = 0.0
    seed: int = 0


def encode_examples(tokenizer,
                    examples: Sequence[tuple[list[dict], str]]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids + end of sequence) per example, tokenized exactly as the engines do."""
    prompts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m,
               _ in examples]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer([r for _, r in examples], add_special_tokens=False)["input_ids"]
    return [(p, r + [tokenizer.eos_token_id]) for p, r in zip(prompt_ids, response_ids)]


def collate(batch: Sequence[tuple[list[int], list[int]]], pad_id: int):
    """Right-padded input ids, attention mask and labels (response positions only) of one batch."""
    import torch

    width = max(len(p) + len(r) for p, r in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (prompt, response) in enumerate(batch):
        seq = prompt + response
        ids[row, : len(seq)] = torch.tensor(seq)
        labels[row, len(prompt) : len(seq)] = torch.tensor(response)
        mask[row, : len(seq)] = 1
    return ids, mask, labels


WARMUP_STEPS = 50


def lr_factor(step: int, steps: int) -> float:
    """Linear warm-up, then cosine decay to a tenth: the late steps settle what the early ones found."""
    if step < WARMUP_STEPS:
        return (step + 1) / WARMUP_STEPS
    progress = (step - WARMUP_STEPS) / max(1, steps - WARMUP_STEPS)
    return 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress)))


def train(model, data: Sequence[tuple[list[int], list[int]]], pad_id: int, settings: TrainSettings,
          on_step: Callable[[int, float], None] | None = None) -> float:
    """Train ``model`` in place; returns the mean loss of the last tenth of the steps."""
    import torch

    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, settings.steps))
    tail: list[float] = []
    for step in range(settings.steps):
        ids, mask, labels = collate(rng.choices(data, k=settings.batch_size), pad_id)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step >= settings.steps * 0.9:
            tail.append(loss.item())
        if on_step is not None:
            on_step(step, loss.item())
    model.eval()
    return sum(tail) / max(len(tail), 1)
