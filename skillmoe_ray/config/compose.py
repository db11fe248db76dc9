"""Hydra's composition of a config tree from overrides, for callers without a command line.

``serve run``'s application builder and the skill lab's CLI compose the same tree the run's command line
would, from the project's ``conf/``; it lives with the config so that neither reaches up into the other.
"""

from __future__ import annotations

from skillmoe_ray.config import CONF_DIR


def compose_tree(overrides: list[str]) -> dict:
    """The resolved config tree Hydra composes from ``conf/`` for ``overrides``."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return OmegaConf.to_container(compose(config_name="config", overrides=overrides), resolve=True)
