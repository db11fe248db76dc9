"""A run killed during expert inference resumes without regenerating finished expert groups."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FAKE_DEMO, TEST_CONF

pytestmark = [pytest.mark.ray]


def inference_shards(cache: Path) -> list[Path]:
    """Generation shards holding test-set answers (tags answer/test-...), i.e. finished inference groups."""
    return [p for p in cache.glob("generations/*/*.jsonl") if '"tag": "answer/test-' in p.read_text()]


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant (Ray's raylet, GCS and workers) at once, like a crash."""
    import psutil

    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=10)


def cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "skillmoe_ray.run", f"hydra.searchpath=[file://{TEST_CONF}]", *FAKE_DEMO,
            *args]


def test_killed_run_resumes_from_finished_expert_groups(tmp_path):
    cache = tmp_path / "cache"
    # whole groups (chunk_requests=0): a stored shard is a finished group (test_long_runs covers chunks)
    common = [f"cache_dir={cache}", "engine.options.delay_s=1.5", "scheduler.chunk_requests=0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(cli([*common, f"hydra.run.dir={tmp_path / 'run1'}"]), cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while len(inference_shards(cache)) < 2 and first.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    kill_tree(first.pid)
    first.wait()
    finished_before_kill = len(inference_shards(cache))
    assert finished_before_kill >= 2, "the run never reached expert inference"
    assert not (tmp_path / "run1" / "results.json").exists(), "the run finished before it could be killed"

    second = subprocess.run(cli([*common, f"hydra.run.dir={tmp_path / 'run2'}"]), cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    results = json.loads((tmp_path / "run2" / "results.json").read_text())
    inference = results["stages"]["inference"]
    assert inference["expert_groups_cached"] >= finished_before_kill
    assert inference["generated"] < inference["requests"]
    rerun = [t["expert"] for t in results["timeline"] if t["stage"] == "inference"]
    assert len(rerun) == inference["expert_groups"] - inference["expert_groups_cached"]
    for stage in ("skills", "profiles", "aggregator_selection"):
        assert results["stages"][stage]["cached"], stage
