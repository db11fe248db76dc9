"""Hydra multirun: one process, one Ray cluster.

Several runs share the expensive stages through the cache.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import FAKE_DEMO, run_cli
from tests.wandb_offline import offline_runs, read_offline_run

# slow: three runs; test_sweeps.py composes every sweep command line in the default run
pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_multirun_over_k_makes_three_runs_and_builds_the_profiles_once(tmp_path):
    sweep_dir = tmp_path / "multirun"
    proc = run_cli(
        [
            *FAKE_DEMO,
            f"cache_dir={tmp_path / 'cache'}",
            "tracking.mode=offline",
            f"hydra.sweep.dir={sweep_dir}",
            "recruit.k=1,2,3",
            "-m",
        ],  # -m last: run_cli puts an override first
        cwd=tmp_path,
        timeout=500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    job_dirs = sorted(p.parent for p in sweep_dir.glob("*/results.json"))
    assert [d.name for d in job_dirs] == ["0", "1", "2"]
    results = [json.loads((d / "results.json").read_text()) for d in job_dirs]
    assert [r["k"] for r in results] == [1, 2, 3]
    assert [r["stages"]["profiles"]["cached"] for r in results] == [False, True, True]
    assert [r["stages"]["skills"]["cached"] for r in results] == [False, True, True]
    assert [r["stages"]["recruitment"]["cached"] for r in results] == [False, False, False]
    assert ["profiles" in r["activations_per_stage"] for r in results] == [True, False, False]
    for job_dir, r in zip(job_dirs, results):
        assert (job_dir / "report.md").is_file() and (job_dir / "timeline.png").is_file()
        (run,) = offline_runs(job_dir)
        assert read_offline_run(run).config["recruit"]["k"] == r["k"]
    assert proc.stdout.count("tracking: W&B offline run") == 3
