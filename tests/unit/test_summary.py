"""The one-screen summary: a fresh run and a rerun whose every stage came from the cache."""

from __future__ import annotations

from skillmoe_ray.reporting.summary import format_summary
from tests.conftest import make_config
from tests.unit.test_pipeline import run_pipeline


def test_a_rerun_says_every_stage_came_from_the_cache(tmp_path):
    cfg = make_config(tmp_path, [f"cache_dir={tmp_path / 'cache'}"])
    first, _ = run_pipeline(cfg)
    again, _ = run_pipeline(cfg)
    first_head = format_summary(first, "run").splitlines()[0]
    again_head = format_summary(again, "run").splitlines()[0]
    assert "pipeline" in first_head and "every stage cached" not in first_head
    assert "every stage cached" in again_head
    assert "symbolic_moe" in format_summary(again, "run")
