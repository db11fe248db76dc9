"""The GPU check of vLLM experts (``jobs/gpu_bench.sh vllm``), dry-run on the CPU with the tiny preset.

What the GPU machine runs, end to end: the runbook's import checks, two expert actors under a local Ray,
the table. Sleep does not exist on the CPU, so its rows read n/a; the rest is checked for real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

# slow: four vLLM engine starts; test_vllm_engine.py and test_vllm_process.py cover the same steps in the
# default run
pytestmark = [pytest.mark.engine, pytest.mark.ray, pytest.mark.slow]


def test_the_vllm_check_runs_on_the_cpu_with_na_for_sleep(tmp_path):
    env = {**os.environ, "DEVICE": "cpu", "PRESET": "tiny", "PYTHON": sys.executable,
           "OUT": str(tmp_path / "out"), "MODELS_DIR": str(tmp_path / "models")}
    done = subprocess.run(["bash", "jobs/gpu_bench.sh", "vllm"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = done.stdout
    steps = ("load A", "sleep A", "load B", "sleep B", "wake A", "unload A (its process ends)",
             "load A again")
    for step in steps:
        assert f"\n{step} " in table
    assert "ok    reload in a fresh process" in table and "ok    weight bytes of A > 0" in table
    assert "n/a   probe after wake equals the one before" in table and "n/a   16 sleepers' residue" in table
    rows = json.loads((tmp_path / "out" / "vllm.json").read_text())
    assert [s["done"] for s in rows["steps"]] == [True, True, False, True, False, False, True, True]
    assert rows["results"]["weight bytes of B > 0"]["value"] > 0
