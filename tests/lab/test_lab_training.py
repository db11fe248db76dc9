"""The lab's training: seeded (same recipe, same weights), cached by recipe hash, and it learns."""

from __future__ import annotations

import json

import pytest

from skillmoe_ray.lab.build import MARKER, ensure_lab_models, full_recipe, recipe_hash, shipped_dir
from skillmoe_ray.lab.check import keyword_accuracy
from skillmoe_ray.lab.world import generate_split
from tests.conftest import compose_tree

pytestmark = pytest.mark.engine


@pytest.mark.slow  # trains two models; the shipped models' recipe check below runs by default
def test_training_learns_is_seeded_and_a_rerun_trains_nothing(tmp_path):
    recipes = {"kw": {"role": "keyword", "arch": "qwen3", "seed": 3, "steps": 150},
               "kw-twin": {"role": "keyword", "arch": "qwen3", "seed": 3, "steps": 150}}
    assert set(ensure_lab_models(recipes, str(tmp_path), workers=2,
                                 use_shipped=False).values()) == {"trained"}
    weights = [(tmp_path / n / "model.safetensors").read_bytes() for n in recipes]
    assert weights[0] == weights[1]  # same recipe, trained in two processes: the same weights
    assert min(keyword_accuracy(tmp_path / "kw", generate_split("test", 40, 0)).values()) >= 0.75
    assert ensure_lab_models(recipes, str(tmp_path), use_shipped=False) == {"kw": "kept", "kw-twin": "kept"}
    report = json.loads((tmp_path / "kw" / MARKER).read_text())
    assert report["hash"] == recipe_hash(full_recipe("kw", recipes["kw"])) and report["final_loss"] < 0.5
    assert not list(tmp_path.glob("*.partial"))
    changed = {"kw": {**recipes["kw"], "seed": 4, "steps": 20}}
    assert ensure_lab_models(changed, str(tmp_path), workers=1, use_shipped=False) == {"kw": "trained"}


@pytest.mark.parametrize("experiment", ["skill_lab", "lab_hard"])
def test_the_shipped_models_match_the_experiments_recipes_so_make_demo_trains_nothing(tmp_path, experiment):
    lab = compose_tree([f"+experiment={experiment}"])["lab"]
    models, world = lab["models"], lab["world"]
    for name, recipe in models.items():
        marker = shipped_dir() / name / MARKER
        assert marker.is_file(), f"{name} is not shipped: run make lab-models"
        assert json.loads(marker.read_text())["hash"] == recipe_hash(full_recipe(name, recipe, world)), (
            f"{name}: its recipe changed since the shipped weights were trained; run make lab-models")
    assert set(ensure_lab_models(models, str(tmp_path), world=world).values()) == {"shipped"}
