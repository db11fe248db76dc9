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


def test_a_group_that_needed_retries_is_named_with_its_first_error(tmp_path):
    results, _ = run_pipeline(make_config(tmp_path))
    assert "retried:" not in format_summary(results, "run")
    entry = results["timeline"][0]
    entry["retries"] = [{"start": 0.0, "end": 1.0, "error": "ActorDiedError: the actor died"},
                        {"error": "again"}]
    line = next(line for line in format_summary(results, "run").splitlines() if line.startswith("retried:"))
    assert line == (f"retried: expert {entry['expert']} in stage {entry['stage']} succeeded after 2 failed "
                    "attempt(s); first: ActorDiedError: the actor died")


def test_the_share_of_cut_outputs_per_stage_and_no_answers_per_expert_are_shown(tmp_path):
    """A max_tokens too small is visible: each generating stage says how many outputs were cut."""
    results, _ = run_pipeline(make_config(tmp_path))
    assert all(s.get("truncated") == 0 for s in results["stages"].values() if "requests" in s)
    stage = next(name for name, s in results["stages"].items() if s.get("requests"))
    results["stages"][stage]["truncated"] = results["stages"][stage]["requests"] // 2
    text = format_summary(results, "run")
    entries = [*results["methods"].values(), *results["per_skill"].values(), *results["per_expert"].values()]
    assert entries and all(e["ci95"][0] <= e["accuracy"] <= e["ci95"][1] for e in entries)
    lo, hi = results["methods"]["symbolic_moe"]["ci95"]
    assert f"[{lo:.3f}, {hi:.3f}]" in text
    assert "cut at max_tokens" in text and "no answer" in text
    row = next(line for line in text.splitlines() if line.startswith(stage + " "))
    assert f"{results['stages'][stage]['truncated']} (" in row
    assert row.rstrip().endswith("%)")
