"""What each generating stage asks of which model: pure builders of (expert, request) pairs.

Seeds follow one rule so that identical work is identical requests across stages, methods and
runs: the s-th sampled answer of any model to instance i uses ``derive_seed(seed, "answer", i, s)``.
A model recruited twice for one instance answers with samples 0 and 1; a model that answered a
question for its profile and is asked again elsewhere reuses sample 0 from the cache.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import replace

from skillmoe_ray.config import GenerationConfig, ModelSpec, SkillsConfig
from skillmoe_ray.data.instances import Instance
from skillmoe_ray.engines.base import GenRequest, Sampling
from skillmoe_ray.method.aggregate import (
    SAFE_CHARS_PER_TOKEN,
    aggregator_messages,
    expert_messages,
    fit_replies,
)
from skillmoe_ray.method.profiles import synthetic_aggregation_task
from skillmoe_ray.method.skills import keyword_messages
from skillmoe_ray.seeding import derive_seed

# Tokens a chat template adds around the messages (role markers, special tokens), counted high.
PROMPT_OVERHEAD_TOKENS = 64
Pair = tuple[str, GenRequest]


def _max_tokens(gen: GenerationConfig, spec: ModelSpec) -> int:
    return min(gen.max_tokens, spec.max_tokens) if gen.max_tokens else spec.max_tokens


def skill_requests(instances: Sequence[Instance], spec: ModelSpec, cfg: SkillsConfig, seed: int,
                   prompts: str = "project") -> list[Pair]:
    """``cfg.samples`` sampled keyword requests per instance, all for the keyword model."""
    return [
        (
            spec.name,
            GenRequest.make(
                keyword_messages(inst, spec.system_role, prompts),
                Sampling(cfg.max_tokens, cfg.temperature, 1.0, derive_seed(seed, "skills", inst.id, s)),
                f"skills/{inst.id}/{s}",
                inst.id,
            ),
        )
        for inst in instances
        for s in range(cfg.samples)
    ]


def answer_request(inst: Instance, spec: ModelSpec, gen: GenerationConfig, seed: int, sample: int = 0,
                   prompts: str = "project") -> GenRequest:
    """The chain-of-thought answer of one model to one instance, sample number ``sample``."""
    sampling = Sampling(_max_tokens(gen, spec), gen.temperature, gen.top_p,
                        derive_seed(seed, "answer", inst.id, sample))
    return GenRequest.make(expert_messages(inst, spec.system_role, prompts), sampling,
                           f"answer/{inst.id}/{sample}",
                           inst.id)


def analysis_requests(instances: Sequence[Instance], experts: Sequence[ModelSpec], gen: GenerationConfig,
                      seed: int, prompts: str = "project") -> list[Pair]:
    """DSMoE: each MoE expert reads each validation question for its routing statistics.

    The question is posed with the answer prompt.
    """
    return [
        (
            spec.name,
            replace(
                answer_request(inst, spec, gen, seed, prompts=prompts), analyze=True, tag=f"steer/{inst.id}"
            ),
        )
        for spec in experts
        for inst in instances
    ]


def profile_requests(
    instances: Sequence[Instance],
    experts: Sequence[ModelSpec],
    gen: GenerationConfig,
    seed: int,
    prompts: str = "project",
) -> list[Pair]:
    """Every expert answers every validation instance once (sample 0)."""
    return [
        (spec.name, answer_request(inst, spec, gen, seed, prompts=prompts))
        for spec in experts
        for inst in instances
    ]


def synthetic_tasks(
    instances: Sequence[Instance],
    texts: Mapping[str, Mapping[str, str]],
    correct: Mapping[str, Mapping[str, bool]],
    seed: int,
) -> dict[str, list[str]]:
    """One shuffled 1-correct/2-incorrect response set per validation instance.

    ``texts[model][instance]`` and ``correct[model][instance]`` come from the profile stage.
    """
    tasks = {}
    for inst in instances:
        responses = {m: by_inst[inst.id] for m, by_inst in texts.items() if inst.id in by_inst}
        graded = {m: correct[m][inst.id] for m in responses}
        rng = random.Random(derive_seed(seed, "synthetic", inst.id))
        tasks[inst.id] = synthetic_aggregation_task(responses, graded, rng)
    return tasks


def aggregation_request(
    inst: Instance,
    responses: Sequence[str],
    spec: ModelSpec,
    gen: GenerationConfig,
    think_end_tag: str,
    seed: int,
    purpose: str,
    prompts: str = "project",
) -> GenRequest:
    """The aggregator's request for one instance; ``purpose`` separates selection from final aggregation."""
    sampling = Sampling(
        _max_tokens(gen, spec), gen.temperature, gen.top_p, derive_seed(seed, purpose, inst.id)
    )
    question = sum(
        len(c)
        for m in aggregator_messages(inst, [""] * len(responses), think_end_tag, spec.system_role, prompts)
        for c in m.values()
    )
    room = (
        spec.max_model_len - sampling.max_tokens - question // SAFE_CHARS_PER_TOKEN - PROMPT_OVERHEAD_TOKENS
    )
    replies = fit_replies(responses, room, think_end_tag)
    messages = aggregator_messages(inst, replies, think_end_tag, spec.system_role, prompts)
    return GenRequest.make(messages, sampling, f"{purpose}/{inst.id}", inst.id)
