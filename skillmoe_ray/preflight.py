"""Everything checked and built before Ray starts, so bad input fails in one line before any model loads.

The validated config, writable directories, the data (decoded and checked), the demo and lab models
(built if asked), local model paths and prompt lengths against each expert's context.

A question whose expert prompt does not fit an expert's context (``max_model_len`` minus the reply's
``max_tokens``) would fail inside the engine after every model before it had loaded and generated; it is
refused here, naming the instance and the expert. Only local models are checked (a hub model's tokenizer
would have to be downloaded first); aggregation prompts, which hold the experts' replies, can only be
measured once those exist.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from skillmoe_ray.config import ModelSpec, RunConfig, check_model_paths, load_config
from skillmoe_ray.data.instances import Instance
from skillmoe_ray.engines import engine_entry
from skillmoe_ray.errors import ConfigError, DataError

log = logging.getLogger("skillmoe_ray")


def check_writable(directory: str, key: str) -> None:
    """Fail now, naming the key, when ``directory`` cannot be created or written (not after a stage's work)."""
    import tempfile

    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise ConfigError(f"{key}={directory} is not a writable directory ({exc.strerror or exc}); "
                          f"set {key}=<a writable directory>") from None


def load_checked(tree: dict, run_dir: str):
    """Validated config, demo models built if asked, model paths checked, and the data loaded."""
    from skillmoe_ray.data import load_data

    cfg = load_config(tree, run_dir)
    check_writable(cfg.cache_dir, "cache_dir")
    val, test = load_data(cfg.data, cfg.seed)  # bad data fails here, before any model is built or trained
    if cfg.demo.build_models:
        from skillmoe_ray.demo import ensure_demo_models

        ensure_demo_models(cfg.demo)
    if cfg.lab.build_models:
        from skillmoe_ray.lab.build import ensure_lab_models

        ensure_lab_models(cfg.lab.models, cfg.lab.models_dir, cfg.lab.workers)
    if not engine_entry(cfg.engine.name).remote:  # served models live on their server, not on this disk
        check_model_paths(cfg.pool)
        if engine_entry(cfg.engine.name).has_tokenizer:  # the fake engine's models have none to measure with
            check_prompt_lengths(cfg, val + test)
    log.info("loaded %d validation and %d test instances", len(val), len(test))
    return cfg, val, test


def longest_prompt(spec: ModelSpec, instances: Sequence[Instance], prompts: str) -> tuple[int, Instance]:
    """(tokens, instance) of the longest expert prompt among ``instances`` for ``spec``'s tokenizer."""
    from transformers import AutoTokenizer

    from skillmoe_ray.method.aggregate import expert_messages

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
