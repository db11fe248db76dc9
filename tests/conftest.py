"""Shared fixtures: composed configs, a tiny random-weight model, a local Ray cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_CONF = REPO / "tests" / "conf"
# Overrides that turn the demo experiment into a fast, model-free run with the fake engine.
FAKE_DEMO = ["+experiment=demo", "engine=fake", "pool=fake", "demo.build_models=false"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def compose_tree(overrides: list[str]) -> dict:
    """The resolved config tree Hydra composes for ``overrides`` (tests' pool dir on the search path)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    search = f"hydra.searchpath=[file://{TEST_CONF}]"
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[search, *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def make_config(tmp_path: Path, overrides: list[str] = (), run_dir: Path | None = None):
    """A validated RunConfig of the fake demo with its cache and run directory under ``tmp_path``."""
    from skillmoe_ray.config import load_config

    tree = compose_tree([*FAKE_DEMO, f"cache_dir={tmp_path / 'cache'}", *overrides])
    return load_config(tree, str(run_dir or tmp_path / "run"))


def run_cli(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m skillmoe_ray.run ARGS`` in a subprocess, as a user would run it."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "skillmoe_ray.run", f"hydra.searchpath=[file://{TEST_CONF}]", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random-weight Llama with the locally trained demo tokenizer (built, never downloaded)."""
    from skillmoe_ray.config import DemoConfig
    from skillmoe_ray.demo import ensure_demo_models

    root = tmp_path_factory.mktemp("models")
    ensure_demo_models(DemoConfig(True, str(root), {"tiny": {"arch": "llama", "seed": 1}}))
    return root / "tiny"


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster with 2 CPUs and 4 logical GPUs, shut down after the session."""
    import ray

    ray.init(num_cpus=2, num_gpus=4, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
