"""Checks of the input that need the models' tokenizers, run before any model loads.

A question whose expert prompt does not fit an expert's context (``max_model_len`` minus the reply's
``max_tokens``) would fail inside the engine after every model before it had loaded and generated;
it is refused here instead, naming the instance and the expert. Only local models are checked (a hub
model's tokenizer would have to be downloaded first); aggregation prompts, which hold the experts'
replies, can only be measured once those exist.
"""

from __future__ import annotations

from collections.abc import Sequence

from skillmoe_ray.config import ModelSpec, RunConfig
from skillmoe_ray.data.instances import Instance
from skillmoe_ray.errors import DataError
from skillmoe_ray.method.aggregate import expert_messages


def longest_prompt(spec: ModelSpec, instances: Sequence[Instance], prompts: str) -> tuple[int, Instance]:
    """(tokens, instance) of the longest expert prompt among ``instances`` for ``spec``'s tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec.path, trust_remote_code=spec.trust_remote_code)
    texts = [tokenizer.apply_chat_template(expert_messages(inst, spec.system_role, prompts), tokenize=False,
                                           add_generation_prompt=True) for inst in instances]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    return lengths[longest], instances[longest]


def check_prompt_lengths(cfg: RunConfig, instances: Sequence[Instance]) -> None:
    """Refuse, naming instance and expert, a question whose prompt leaves no room for an expert's reply."""
    if not instances:
        return
    for spec in cfg.experts:
        if not spec.is_local:
            continue
        room = spec.max_model_len - min(spec.max_tokens, cfg.inference.max_tokens or spec.max_tokens)
        tokens, inst = longest_prompt(spec, instances, cfg.prompts)
        if tokens > room:
            raise DataError(
                f"instance {inst.id}: its prompt is {tokens} tokens for expert {spec.name!r}, whose context leaves "
                f"{room} (pool.models.{spec.name}.max_model_len={spec.max_model_len} minus {spec.max_model_len - room} "
                f"for the reply); shorten the question or raise max_model_len"
            )
