"""Everything checked and built before Ray starts, so bad input fails in one line before any model loads.

The validated config, writable directories, the data (decoded and checked), the demo and lab models
(built if asked), local model paths and prompt lengths against each expert's context; and Hydra's
composition of a config from overrides, for callers without a command line (``serve run``'s builder).
"""

from __future__ import annotations

import logging
import os

from skillmoe_ray.config import CONF_DIR, check_model_paths, load_config
from skillmoe_ray.engines import engine_entry
from skillmoe_ray.errors import ConfigError

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
        if cfg.engine.name != "fake":  # the fake engine's models have no tokenizer
            from skillmoe_ray.input_checks import check_prompt_lengths

            check_prompt_lengths(cfg, val + test)
    log.info("loaded %d validation and %d test instances", len(val), len(test))
    return cfg, val, test


def compose_tree(overrides: list[str]) -> dict:
    """The resolved config tree Hydra composes from ``conf/`` for ``overrides``."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return OmegaConf.to_container(compose(config_name="config", overrides=overrides), resolve=True)
