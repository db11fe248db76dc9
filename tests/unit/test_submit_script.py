"""jobs/submit.py's pure parts: the job's command line, the runtime environment, the arguments."""

from __future__ import annotations

import importlib.util
import shlex

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def submit():
    spec = importlib.util.spec_from_file_location("jobs_submit", REPO / "jobs" / "submit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_entrypoint_runs_the_hydra_entry_with_every_override_intact(submit):
    overrides = ["+experiment=gpqa", "hydra.searchpath=[file:///x y/conf]", "data.val.where={subject: 'law'}"]
    command = submit.entrypoint(overrides)
    assert shlex.split(command) == ["python", "-m", "skillmoe_ray.run", *overrides]


def test_the_shipped_runtime_env_uploads_the_repository(submit):
    runtime_env = submit.load_runtime_env(REPO / "jobs" / "runtime_env.yaml")
    assert runtime_env["working_dir"] == str(REPO)
    assert {".venv/", ".cache/", "runs/", "wandb/"} <= set(runtime_env["excludes"])
    assert any(p.startswith("hydra-core") for p in runtime_env["pip"])


def test_absolute_and_remote_working_dirs_are_kept(submit, tmp_path):
    for working_dir in ["/srv/skillmoe", "s3://bucket/skillmoe.zip"]:
        path = tmp_path / "env.yaml"
        path.write_text(f"working_dir: {working_dir}\n")
        assert submit.load_runtime_env(path)["working_dir"] == working_dir


def test_options_come_first_and_the_rest_are_hydra_overrides(submit):
    args = submit.parse_args(["--address", "http://head:8265", "--no-wait", "+experiment=gpqa",
                              "recruit.k=5"])
    assert args.address == "http://head:8265" and args.no_wait
    assert args.runtime_env == REPO / "jobs" / "runtime_env.yaml"
    assert args.overrides == ["+experiment=gpqa", "recruit.k=5"]
