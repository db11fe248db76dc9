"""W&B tracking: mode resolution, what a run logs (read back from the offline run), and failing softly."""

from __future__ import annotations

import json
import sys

import pytest

from skillmoe_ray.config import TrackingConfig
from skillmoe_ray.reporting import tracking
from skillmoe_ray.reporting.report import write_report
from skillmoe_ray.reporting.tracking import (
    NullTracker,
    open_tracker,
    prediction_table,
    primitive,
    resolve_mode,
    summary_values,
    track_run,
)
from tests.conftest import FAKE_DEMO, compose_tree, make_config, wandb_processes
from tests.unit.test_pipeline import run_pipeline
from tests.wandb_offline import offline_runs, read_offline_run


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One in-process fake-engine demo run and its report: (run directory, config tree, results, plots)."""
    tmp = tmp_path_factory.mktemp("tracking")
    overrides = [f"cache_dir={tmp / 'cache'}"]
    results, _ = run_pipeline(make_config(tmp, overrides))
    run_dir = tmp / "run"
    return run_dir, compose_tree([*FAKE_DEMO, *overrides]), results, write_report(run_dir, results).plots


def netrc_file(tmp_path, host: str):
    path = tmp_path / "netrc"
    path.write_text(f"machine {host}\n  login user\n  password secret\n")
    path.chmod(0o600)
    return str(path)


@pytest.mark.parametrize("mode", ["online", "offline", "disabled"])
def test_an_explicit_mode_wins_over_the_environment(mode):
    assert resolve_mode(mode, {"WANDB_MODE": "offline", "WANDB_API_KEY": "k"}) == (
        mode,
        f"tracking.mode={mode}",
    )


def test_auto_is_offline_without_credentials(tmp_path):
    assert resolve_mode("auto", {"NETRC": str(tmp_path / "absent")}) == ("offline", "not logged in to W&B")


def test_auto_is_online_with_an_api_key_or_a_netrc_entry(tmp_path):
    assert resolve_mode("auto", {"WANDB_API_KEY": "k", "NETRC": str(tmp_path / "absent")})[0] == "online"
    assert resolve_mode("auto", {"NETRC": netrc_file(tmp_path, "api.wandb.ai")})[0] == "online"


def test_a_netrc_entry_for_another_host_is_not_a_w_and_b_login(tmp_path):
    assert resolve_mode("auto", {"NETRC": netrc_file(tmp_path, "github.com")})[0] == "offline"
    on_prem = {
        "NETRC": netrc_file(tmp_path, "wandb.example.org"),
        "WANDB_BASE_URL": "https://wandb.example.org",
    }
    assert resolve_mode("auto", on_prem)[0] == "online"


@pytest.mark.parametrize(
    ("env", "mode"), [("disabled", "disabled"), ("dryrun", "offline"), ("online", "online")]
)
def test_auto_follows_wandb_mode_when_it_is_set(tmp_path, env, mode):
    assert resolve_mode("auto", {"WANDB_MODE": env, "NETRC": str(tmp_path / "absent")}) == (
        mode,
        f"WANDB_MODE={env}",
    )


def test_primitive_turns_tuples_into_lists_and_odd_values_into_strings(tmp_path):
    assert primitive({"a": (1, 2.5, None), 3: {"p": tmp_path}}) == {
        "a": [1, 2.5, None],
        "3": {"p": str(tmp_path)},
    }


def test_summary_values_hold_accuracies_stage_timings_and_activations(demo_run):
    _, _, results, _ = demo_run
    summary = summary_values(results)
    for method, m in results["methods"].items():
        assert summary[f"accuracy/{method}"] == m["accuracy"]
        assert summary[f"accuracy_stderr/{method}"] == m["stderr"]
        lo, hi = m["ci95"]
        assert summary[f"accuracy_ci95_low/{method}"] == lo <= m["accuracy"] <= hi
        assert summary[f"accuracy_ci95_high/{method}"] == hi
        assert all(summary[f"accuracy/{method}/{t}"] == a for t, a in m["per_task"].items())
    for stage, s in results["stages"].items():
        assert (
            summary[f"stage/{stage}/seconds"] == s["seconds"]
            and summary[f"stage/{stage}/cached"] is s["cached"]
        )
    assert summary["activations_total"] == sum(results["activations"].values()) > 0
    assert all(isinstance(v, (int, float, str, bool)) or v is None for v in summary.values())


def test_prediction_table_joins_answers_with_skills_and_experts():
    answers = [
        {
            "id": "q1",
            "task": "t",
            "gold": "B",
            "answers": {"symbolic_moe": "B", "majority_vote": None},
            "correct": {"symbolic_moe": True, "majority_vote": False},
        }
    ]
    recruited = [{"instance_id": "q1", "skills": ["optics", "algebra"], "experts": ["x", "x", "y"]}]
    columns, rows = prediction_table(answers, recruited)
    assert columns == [
        "id",
        "task",
        "gold",
        "skills",
        "experts",
        "symbolic_moe answer",
        "symbolic_moe correct",
        "majority_vote answer",
        "majority_vote correct",
    ]
    assert rows == [["q1", "t", "B", "optics, algebra", "x, x, y", "B", True, None, False]]


def test_disabled_mode_gives_a_null_tracker_that_says_why(tmp_path):
    tracker = open_tracker(TrackingConfig(mode="disabled"), tmp_path, {})
    assert isinstance(tracker, NullTracker)
    assert tracker.status() == "tracking: off (tracking.mode=disabled)"
    assert not (tmp_path / "wandb").exists()


def test_without_wandb_installed_tracking_is_off_and_says_so(demo_run, monkeypatch, tmp_path):
    run_dir, tree, results, plots = demo_run
    monkeypatch.setitem(sys.modules, "wandb", None)
    status = track_run(TrackingConfig(mode="offline", dir=str(tmp_path)), run_dir, tree, results, plots)
    assert status == "tracking: off (wandb is not installed: pip install 'skillmoe-ray[tracking]')"
    assert not (tmp_path / "wandb").exists()


def test_an_offline_run_holds_the_resolved_config_summary_tables_images_and_artifacts(demo_run, tmp_path):
    run_dir, tree, results, plots = demo_run
    status = track_run(
        TrackingConfig(mode="offline", dir=str(tmp_path), tags=("nightly",)), run_dir, tree, results, plots
    )
    (path,) = offline_runs(tmp_path)
    assert (
        status
        == f"tracking: W&B offline run (tracking.mode=offline) in {path}; upload it with: wandb sync {path}"
    )
    run = read_offline_run(path)
    assert {k: v for k, v in run.config.items() if k != "_wandb"} == json.loads(json.dumps(tree))
    assert run.summary["accuracy/symbolic_moe"] == results["methods"]["symbolic_moe"]["accuracy"]
    assert run.summary["stage/profiles/seconds"] == results["stages"]["profiles"]["seconds"]
    assert run.summary["stage/profiles/cached"] is False
    assert run.summary["predictions"]["nrows"] == results["n_instances"]
    assert run.summary["per_skill"]["nrows"] == len(results["per_skill"])
    # No stage ran under this tracker: the one history row is the accuracy charts' (W&B charts are logged).
    (charts,) = run.history
    assert {k for k in charts if not k.startswith("_")} == {
        "charts/accuracy_by_method_table",
        "charts/accuracy_by_skill_table",
    }
    assert charts["charts/accuracy_by_method_table"]["nrows"] == len(results["methods"])
    visualize = run.config["_wandb"]["visualize"]
    assert visualize["charts/accuracy_by_method"]["panel_config"]["panelDefId"] == "wandb/bar/v0"
    assert run.name == f"demo-k{tree['recruit']['k']}-seed{tree['seed']}"
    stage_metrics = {m["name"]: m for m in run.metrics}
    assert stage_metrics["stage_*"]["step_metric"] == "stage_index"
    assert stage_metrics["stage_*"]["summary_none"]
    assert stage_metrics["stage"]["summary_none"] and stage_metrics["stage_index"]["summary_none"]
    images = {k for k, v in run.summary.items() if isinstance(v, dict) and v.get("_type") == "image-file"}
    assert images == {f"report/{name}" for name in plots} and len(images) == 4
    assert {(a["name"], a["type"], tuple(a["files"])) for a in run.artifacts} >= {
        ("demo-profiles", "profiles", ("profiles.json",)),
        ("demo-results", "results", ("results.json",)),
    }


def test_stage_rows_stay_out_of_the_summary_and_system_metrics_follow_the_gpu(
    demo_run, tmp_path, monkeypatch
):
    run_dir, tree, results, plots = demo_run
    live = tracking.LiveTracking(TrackingConfig(mode="offline", dir=str(tmp_path)), run_dir, tree)
    live.stage_done(
        {
            "stage": "profiles",
            "stage_index": 1,
            "stage_seconds": 2.5,
            "activations_so_far": 4,
            "elapsed_seconds": 3.0,
        }
    )
    live.finish(results, plots)
    run = read_offline_run(offline_runs(tmp_path)[0])
    assert run.history[0]["stage_seconds"] == 2.5
    stage_keys = {"stage", "stage_index", "stage_seconds", "activations_so_far", "elapsed_seconds"}
    assert not stage_keys & set(run.summary)
    assert run.summary["accuracy/symbolic_moe"] == results["methods"]["symbolic_moe"]["accuracy"]
    monkeypatch.setattr(tracking.shutil, "which", lambda name: f"/bin/{name}" if "nvidia" in name else None)
    assert tracking.system_metrics_wanted()
    monkeypatch.setattr(tracking.shutil, "which", lambda name: None)
    assert not tracking.system_metrics_wanted()


def test_a_tracking_failure_is_one_line_and_leaves_the_results(demo_run, monkeypatch, tmp_path):
    run_dir, tree, results, plots = demo_run
    before = (run_dir / "results.json").read_text()

    def broken(results):
        raise RuntimeError("summary exploded")

    monkeypatch.setattr(tracking, "summary_values", broken)
    status = track_run(TrackingConfig(mode="offline", dir=str(tmp_path)), run_dir, tree, results, plots)
    assert status == f"tracking: failed (RuntimeError: summary exploded); the run's results are in {run_dir}"
    assert (run_dir / "results.json").read_text() == before


def test_no_wandb_process_is_left_after_teardown(demo_run, wandb_sandbox, tmp_path):
    import wandb

    run_dir, tree, results, plots = demo_run
    track_run(TrackingConfig(mode="offline", dir=str(tmp_path)), run_dir, tree, results, plots)
    wandb.teardown()
    assert wandb_processes(wandb_sandbox) == []
