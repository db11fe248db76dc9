"""W&B sweep specs in jobs/sweeps/: each parses, and every command line its agent would run
composes with Hydra.

The agent's command is built with wandb's own helpers, the way ``wandb agent`` builds it
(wandb_agent.Agent._command_run): macros like ``${env}`` and ``${args_no_hyphens}`` are replaced by
their expansion. Grid sweeps are expanded in full; random and bayes sweeps are sampled.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest
import yaml

from skillmoe_ray.config import load_config
from skillmoe_ray.reporting.tracking import summary_values
from tests.conftest import REPO, compose_tree

SWEEPS = sorted((REPO / "jobs" / "sweeps").glob("*.yaml"))
SWEEP_KEYS = {
    "name",
    "description",
    "project",
    "entity",
    "program",
    "method",
    "metric",
    "parameters",
    "command",
    "early_terminate",
    "run_cap",
}
SAMPLES = 6  # draws checked per random or bayes sweep


def load(path) -> dict:
    return yaml.safe_load(path.read_text())


def draw(spec: dict, rng: random.Random):
    """One value of a parameter the way the sweep controller would pick it."""
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        return rng.choice(spec["values"])
    kind = spec.get("distribution", "int_uniform" if isinstance(spec["min"], int) else "uniform")
    low, high = spec["min"], spec["max"]
    if kind == "int_uniform":
        return rng.randint(low, high)
    if kind == "uniform":
        return rng.uniform(low, high)
    if kind == "log_uniform_values":
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    raise AssertionError(f"distribution {kind!r} is not handled by this test yet")


def parameter_sets(spec: dict) -> list[dict]:
    """Every grid point, or SAMPLES draws for random and bayes sweeps (seeded)."""
    params = spec["parameters"]
    if spec["method"] == "grid":
        choices = [p["values"] if "values" in p else [p["value"]] for p in params.values()]
        return [dict(zip(params, combo)) for combo in itertools.product(*choices)]
    rng = random.Random(0)
    return [{name: draw(p, rng) for name, p in params.items()} for _ in range(SAMPLES)]


def agent_command(spec: dict, values: dict) -> list[str]:
    """The command line ``wandb agent`` runs for one set of parameter values."""
    from wandb.sdk.launch.sweeps import utils

    macros = utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})
    macros.update(env=["/usr/bin/env"], interpreter=["python"], program=[spec.get("program", "")])
    command = []
    for part in map(str, utils.create_sweep_command(spec["command"])):
        is_macro = part.startswith("${") and part.endswith("}")
        command += (macros.get(part[2:-1]) or []) if is_macro else [part]
    return command


def lookup(tree: dict, dotted: str):
    for key in dotted.split("."):
        tree = tree[key]
    return tree


def test_the_documented_sweeps_exist():
    assert {p.stem for p in SWEEPS} >= {"recruit_k_temperature", "seeds", "demo_random"}


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_spec_is_well_formed(path):
    spec = load(path)
    assert set(spec) <= SWEEP_KEYS, f"unknown sweep keys: {set(spec) - SWEEP_KEYS}"
    assert spec["method"] in ("grid", "random", "bayes")
    assert spec["parameters"], "a sweep needs parameters"
    assert spec["command"][:4] == ["${env}", "python", "-m", "skillmoe_ray.run"]
    assert spec["command"][-1] == "${args_no_hyphens}", "Hydra takes overrides as key=value"
    results = {
        "n_instances": 1,
        "methods": {m: {"accuracy": 0.5, "per_task": {}} for m in ("symbolic_moe", "majority_vote")},
        "stages": {},
    }
    assert spec["metric"]["name"] in summary_values(results), (
        "the metric must be a key of the run's W&B summary"
    )
    assert spec["metric"]["goal"] in ("maximize", "minimize")


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_every_command_line_the_agent_would_run_composes_with_hydra(path, tmp_path):
    pytest.importorskip("wandb")
    spec = load(path)
    sets = parameter_sets(spec)
    assert sets
    for values in sets:
        command = agent_command(spec, values)
        assert command[:4] == ["/usr/bin/env", "python", "-m", "skillmoe_ray.run"]
        overrides = command[4:]
        assert all("=" in o and not o.startswith("-") for o in overrides), overrides
        tree = compose_tree(overrides)
        cfg = load_config(tree, str(tmp_path / "run"))
        for name, value in values.items():
            assert lookup(tree, name) == pytest.approx(value), (name, overrides)
        assert cfg.tracking.mode == "online", "sweep runs must report to the sweep"
