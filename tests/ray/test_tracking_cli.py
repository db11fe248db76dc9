"""Tracking and the report through the command line (fake-engine demo on a local Ray cluster)."""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.conftest import FAKE_DEMO, compose_tree, run_cli, wandb_processes
from tests.wandb_offline import offline_runs, read_offline_run

pytestmark = pytest.mark.ray


def demo_args(tmp_path, *extra: str) -> list[str]:
    return [*FAKE_DEMO, f"cache_dir={tmp_path / 'cache'}", *extra]


def run_demo(tmp_path, *extra: str, env: dict | None = None):
    proc = run_cli([*demo_args(tmp_path, *extra), f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, env=env,
                   timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, tmp_path / "run"


def status_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("tracking:")]


def mentions_of_tracking(stdout: str, tmp_path) -> list[str]:
    """Output lines that mention tracking or W&B (the test's own directory names removed first)."""
    return [line for line in stdout.splitlines()
            if re.search(r"tracking|wandb|W&B", line.replace(str(tmp_path), ""), re.IGNORECASE)]


def test_offline_demo_run_leaves_a_wandb_run_with_accuracies_timings_and_the_resolved_config(
    tmp_path, wandb_sandbox
):
    proc, run_dir = run_demo(tmp_path, "tracking.mode=offline")
    results = json.loads((run_dir / "results.json").read_text())
    (path,) = offline_runs(run_dir)
    assert status_lines(proc.stdout) == [
        f"tracking: W&B offline run (tracking.mode=offline) in {path}; upload it with: wandb sync {path}"
    ]
    run = read_offline_run(path)
    expected = compose_tree(demo_args(tmp_path, "tracking.mode=offline"))
    assert {k: v for k, v in run.config.items() if k != "_wandb"} == expected
    for method, m in results["methods"].items():
        assert run.summary[f"accuracy/{method}"] == m["accuracy"]
    for stage, s in results["stages"].items():
        assert run.summary[f"stage/{stage}/seconds"] == s["seconds"]
        assert run.summary[f"stage/{stage}/cached"] is s["cached"]
    assert f"report: {run_dir / 'report.md'}" in proc.stdout.splitlines()
    assert wandb_processes(wandb_sandbox) == []


@pytest.mark.slow  # one more whole run; tests/unit/test_tracking.py covers the mode
def test_auto_mode_without_a_login_tracks_offline_into_the_run_directory(tmp_path):
    env = {"WANDB_MODE": None, "NETRC": str(tmp_path / "no-netrc")}
    proc, run_dir = run_demo(tmp_path, env=env)
    (line,) = status_lines(proc.stdout)
    assert line.startswith("tracking: W&B offline run (not logged in to W&B) in ")
    assert len(offline_runs(run_dir)) == 1


@pytest.mark.slow  # one more whole run; tests/unit/test_tracking.py covers the mode
def test_disabled_tracking_completes_the_run_and_says_so_once(tmp_path):
    proc, run_dir = run_demo(tmp_path, "tracking.mode=disabled")
    assert (run_dir / "results.json").is_file() and (run_dir / "report.md").is_file()
    assert status_lines(proc.stdout) == ["tracking: off (tracking.mode=disabled)"]
    assert mentions_of_tracking(proc.stdout, tmp_path) == status_lines(proc.stdout)
    assert not (run_dir / "wandb").exists()


@pytest.mark.slow  # one more whole run; tests/unit/test_tracking.py covers the mode
def test_without_wandb_installed_the_run_completes_and_says_so_once(tmp_path):
    shadow = tmp_path / "no-wandb" / "wandb"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("No module named \'wandb\'", name="wandb")\n')
    env = {"PYTHONPATH": os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")])}
    proc, run_dir = run_demo(tmp_path, "tracking.mode=offline", env=env)
    assert (run_dir / "results.json").is_file()
    assert status_lines(proc.stdout) == [
        "tracking: off (wandb is not installed: pip install 'skillmoe-ray[tracking]')"
    ]
    assert mentions_of_tracking(proc.stdout, tmp_path) == status_lines(proc.stdout)
    assert "Traceback" not in proc.stderr


def test_a_tracking_failure_is_one_line_and_the_run_still_succeeds(tmp_path):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    proc, run_dir = run_demo(tmp_path, "tracking.mode=offline", f"tracking.dir={not_a_directory}")
    assert (run_dir / "results.json").is_file() and (run_dir / "report.md").is_file()
    (line,) = status_lines(proc.stdout)
    assert line.startswith("tracking: failed (FileExistsError: ") and line.endswith(
        f"the run's results are in {run_dir}"
    )
    assert "Traceback" not in proc.stdout + proc.stderr
