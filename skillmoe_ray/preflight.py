"""Everything checked and built before Ray starts, so bad input fails in one line before any model loads.

The validated config, writable directories, the data (decoded and checked), the demo and lab models
(built if asked), local model paths and prompt lengths against each expert's context.

A question whose expert prompt does not fit an expert's context (``max_model_len`` minus the reply's
``max_tokens``) would fail inside the engine after every model before it had loaded and generated; it is
refused here, naming the instance and the model. The same holds for the keyword model's prompt and the
aggregator's (measured with room for the k answers; answers too long for the aggregator's context are cut
at aggregation, :func:`skillmoe_ray.method.aggregate.fit_replies`). Only local models are checked (a hub
model's tokenizer would have to be downloaded first).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from skillmoe_ray.config import ModelSpec, RunConfig, check_model_paths, check_remote_code, load_config
from skillmoe_ray.config.checks import check_router_sizes
from skillmoe_ray.data.instances import Instance
from skillmoe_ray.engines import engine_entry
from skillmoe_ray.errors import ConfigError, DataError

log = logging.getLogger("skillmoe_ray")
Messages = Callable[[Instance], list[dict]]
AGGREGATOR_REPLY_FLOOR = 32  # tokens each expert answer keeps at least in the aggregator's prompt


def check_writable(directory: str, key: str) -> None:
    """Fail now, naming the key, when ``directory`` cannot be created or written.

    Now, not after a stage's work.
    """
    import tempfile

    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{key}={directory} is not a writable directory ({exc.strerror or exc}); "
            f"set {key}=<a writable directory>"
        ) from None


@contextmanager
def run_dir_lock(run_dir: str) -> Iterator[None]:
    """Hold ``<run_dir>/.lock`` while a run uses the directory: a second run there is refused in one line
    instead of both writing (and interleaving) run.log and results.json. The lock is the kernel's (flock),
    so a run that dies, however it dies, releases it."""
    import fcntl

    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, ".lock"), "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise ConfigError(
                f"run directory {run_dir} is in use by another run ({holder}); wait for it to end "
                f"or set hydra.run.dir=<another directory>"
            ) from None
        f.truncate(0)
        f.write(f"pid {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_checked(tree: dict, run_dir: str):
    """Validated config, demo models built if asked, model paths checked, and the data loaded."""
    from skillmoe_ray.data import load_data

    cfg = load_config(tree, run_dir)
    check_writable(cfg.cache_dir, "cache_dir")
    val, test = load_data(cfg.data, cfg.seed)  # bad data fails here, before any model is built or trained
    check_router_sizes(cfg, len(val))
    if cfg.demo.build_models:
        from skillmoe_ray.demo import ensure_demo_models

        ensure_demo_models(cfg.demo)
    if cfg.lab.build_models:
        from skillmoe_ray.lab.build import ensure_lab_models

        ensure_lab_models(cfg.lab.models, cfg.lab.models_dir, cfg.lab.workers, world=cfg.lab.world)
    if not engine_entry(cfg.engine.name).remote:  # served models live on their server, not on this disk
        check_model_paths(cfg.pool)
        if engine_entry(
            cfg.engine.name
        ).has_tokenizer:  # the fake engine's models have none (and run no code)
            check_remote_code(cfg.pool)
            check_prompt_lengths(cfg, val + test)
    log.info("loaded %d validation and %d test instances", len(val), len(test))
    return cfg, val, test


def longest_prompt(
    spec: ModelSpec, instances: Sequence[Instance], messages: Messages
) -> tuple[int, Instance]:
    """(tokens, instance) of the longest prompt ``messages(inst)`` among ``instances``.

    Tokens are counted with ``spec``'s tokenizer.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        spec.path, trust_remote_code=spec.trust_remote_code, revision=spec.revision
    )
    texts = [
        tokenizer.apply_chat_template(messages(inst), tokenize=False, add_generation_prompt=True)
        for inst in instances
    ]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    return lengths[longest], instances[longest]


def prompt_checks(cfg: RunConfig) -> list[tuple[str, ModelSpec, int, Messages]]:
    """(role, model, tokens its reply takes, the prompt of an instance) for each local model a run prompts.

    The keyword model's prompt holds the question; an expert's, the question and its instruction; the
    aggregator's, the question and k replies. The replies are not known yet: measured here with the replies
    empty, and each reply's share of the room left is what :func:`aggregator_messages` cuts a reply to.
    """
    from skillmoe_ray.method.aggregate import aggregator_messages, expert_messages
    from skillmoe_ray.method.skills import keyword_messages

    def reply(spec: ModelSpec, limit: int | None) -> int:
        return min(spec.max_tokens, limit or spec.max_tokens)

    keyword = cfg.pool[cfg.skills.keyword_model]
    checks = [
        (
            "keyword model",
            keyword,
            cfg.skills.max_tokens,
            lambda inst: keyword_messages(inst, keyword.system_role, cfg.prompts),
        )
    ]
    for spec in cfg.experts:
        checks.append(
            (
                "expert",
                spec,
                reply(spec, cfg.inference.max_tokens),
                lambda inst, s=spec: expert_messages(inst, s.system_role, cfg.prompts),
            )
        )
    for name in cfg.aggregator_candidates():
        spec = cfg.pool[name]
        room = AGGREGATOR_REPLY_FLOOR * cfg.recruit.k  # the least each of the k replies keeps
        checks.append(
            (
                "aggregator",
                spec,
                reply(spec, cfg.inference.max_tokens) + room,
                lambda inst, s=spec: aggregator_messages(
                    inst, [""] * cfg.recruit.k, system_role=s.system_role, prompts=cfg.prompts
                ),
            )
        )
    return [c for c in checks if c[1].is_local]


def check_prompt_lengths(cfg: RunConfig, instances: Sequence[Instance]) -> None:
    """Refuse, naming instance and model, a question whose prompt leaves a model no room for its reply.

    Checked for every model the run prompts (the keyword model, the experts, the aggregator candidates with
    room for k replies) before any model loads.
    """
    if not instances:
        return
    for role, spec, reply_tokens, messages in prompt_checks(cfg):
        room = spec.max_model_len - reply_tokens
        tokens, inst = longest_prompt(spec, instances, messages)
        if tokens > room:
            raise DataError(
                f"instance {inst.id}: its prompt is {tokens} tokens for the {role} {spec.name!r}, "
                f"whose context leaves {room} "
                f"(pool.models.{spec.name}.max_model_len={spec.max_model_len} minus {reply_tokens} "
                f"for the reply{' and the k answers' if role == 'aggregator' else ''}); "
                f"shorten the question or raise max_model_len"
            )
