"""Long runs through the command line, output not a terminal (as under nohup): progress lines, run.log,
chunks that survive a kill, a live W&B run, and a GPU-slot request the cluster cannot meet."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import FAKE_DEMO, run_cli
from tests.ray.test_resume import cli, kill_tree
from tests.wandb_offline import offline_runs, read_offline_run

pytestmark = [pytest.mark.ray]

CHUNK = 16
# Each request takes 20 ms: the keyword model's group (80 questions x 5 samples) runs ~8 s in 25 chunks
SLOW = ["engine.options.request_delay_s=0.02", f"scheduler.chunk_requests={CHUNK}"]
LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


def shards(cache: Path, tag_prefix: str) -> list[Path]:
    """Generation shards (one per stored chunk) holding requests whose tag starts with ``tag_prefix``."""
    return [p for p in cache.glob("generations/*/*.jsonl") if f'"tag": "{tag_prefix}' in p.read_text()]


def logged(path: Path, tag_prefix: str) -> set[tuple[str, str]]:
    """(model, request hash) of every request the fake engine was asked for, by tag prefix."""
    if not path.exists():
        return set()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {(r["model"], r["request"]) for r in rows if r["tag"].startswith(tag_prefix)}


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not predicate() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)


def log_times(lines: list[str]) -> list[float]:
    return [datetime.strptime(LOG_TIME.match(line).group(1),
                              "%Y-%m-%d %H:%M:%S,%f").timestamp() for line in lines]


def test_a_long_group_shows_progress_lines_in_the_output_and_run_log_and_wandb_has_a_row_per_stage(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli([*FAKE_DEMO, f"cache_dir={tmp_path / 'cache'}", *SLOW, "scheduler.progress_every_s=1",
                    "tracking.mode=offline", f"hydra.run.dir={run_dir}"], cwd=tmp_path, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"skills: \d+/400 requests \(\d+%\), [\d.]+ requests/s, ETA \S+",
                     proc.stderr), proc.stderr[-2000:]

    lines = (run_dir / "run.log").read_text().splitlines()
    assert any("stage profiles: running" in line for line in lines)  # the pipeline's lines
    assert any("[skills] expert tiny-keyword active on slot 0" in line for line in lines)  # the scheduler's
    assert any("loaded 40 validation and 40 test instances" in line for line in lines)  # the entry point's
    start = next(i for i, line in enumerate(lines) if "skills: 400 requests to generate" in line)
    end = next(i for i, line in enumerate(lines) if "skills: 400/400 requests done in" in line)
    ticks = [line for line in lines[start:end + 1] if "skillmoe_ray.progress" in line]
    assert len(ticks) >= 5, ticks
    times = log_times(ticks)
    assert max(b - a for a, b in zip(times, times[1:])) < 2.5, ticks  # a line every 1 s while the group runs

    results = json.loads((run_dir / "results.json").read_text())
    (path,) = offline_runs(run_dir)
    run = read_offline_run(path)
    stage_rows = [row for row in run.history if "stage" in row]  # the last row holds the accuracy charts
    assert [row["stage"] for row in stage_rows] == list(results["stages"])
    assert stage_rows[-1]["activations_so_far"] == sum(results["activations"].values())
    assert run.exit_code == 0


def test_a_run_killed_mid_group_regenerates_at_most_one_chunk_and_activates_each_expert_once(tmp_path):
    cache = tmp_path / "cache"
    common = [f"cache_dir={cache}", *SLOW, "tracking.mode=disabled"]
    first_log, second_log = tmp_path / "requests1.jsonl", tmp_path / "requests2.jsonl"
    first = subprocess.Popen(
        cli([*common, f"engine.options.request_log={first_log}", f"hydra.run.dir={tmp_path / 'r1'}"]),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: len(shards(cache, "skills/")) >= 3, first)
    finally:
        kill_tree(first.pid)
        first.wait()
    stored_chunks = len(shards(cache, "skills/"))
    assert stored_chunks >= 3, "the run never reached the keyword model's chunks"

    second = run_cli(
        [*FAKE_DEMO, *common, f"engine.options.request_log={second_log}", f"hydra.run.dir={tmp_path / 'r2'}"],
        cwd=tmp_path,
        timeout=400,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    started_before, generated_after = logged(first_log, "skills/"), logged(second_log, "skills/")
    assert generated_after, "the kill came after the group had finished"
    assert len(started_before - generated_after) >= stored_chunks * CHUNK  # the stored chunks were kept
    assert len(started_before & generated_after) <= CHUNK  # only the chunk in flight is generated again
    results = json.loads((tmp_path / "r2" / "results.json").read_text())
    assert (
        results["stages"]["skills"]["generated"]
        == len(generated_after)
        < results["stages"]["skills"]["requests"]
    )
    for stage, counts in results["activations_per_stage"].items():
        assert set(counts.values()) == {1}, stage


@pytest.mark.slow  # the SIGINT twin (test_faults_cli.py) runs by default
def test_a_run_stopped_by_sigterm_mid_stage_leaves_a_failed_wandb_run_with_the_stages_that_finished(tmp_path):
    cache, run_dir = tmp_path / "cache", tmp_path / "run"
    args = [f"cache_dir={cache}", *SLOW, "tracking.mode=offline", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(
        cli(args),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: any('"tag": "answer/' in p.read_text() for p in cache.glob("generations/*/*.jsonl")), proc
        )
        assert proc.poll() is None, "the run ended before the profiles stage"
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        kill_tree(proc.pid) if proc.poll() is None else None
    assert proc.returncode == 143, err[-3000:]
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    (path,) = offline_runs(run_dir)
    assert f"in {path}" in out and "(marked failed: SystemExit: 143)" in out
    run = read_offline_run(path)
    assert run.exit_code == 1
    finished = {p.parent.name for p in cache.glob("stages/*/*.json")}
    stages = [row["stage"] for row in run.history if "stage" in row]
    assert stages[0] == "skills" and set(stages) <= finished and "profiles" not in stages
    assert not (run_dir / "results.json").exists()


def test_more_gpu_slots_than_the_cluster_has_fail_within_seconds_naming_what_it_has(tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 2, "include_dashboard": False}
    )
    try:
        start = time.monotonic()
        proc = run_cli(
            [
                *FAKE_DEMO,
                f"cache_dir={tmp_path / 'cache'}",
                f"resources.ray_address={cluster.address}",
                "resources.gpus=8",
                f"hydra.run.dir={tmp_path / 'run'}",
            ],
            cwd=tmp_path,
            timeout=120,
        )
        elapsed = time.monotonic() - start
    finally:
        cluster.shutdown()
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert (
        errors[0].startswith(
            "error: resources.gpus=8 asks for 8 GPU slots, but the Ray cluster has 2 GPU(s) on 1 node(s)"
        )
        and "resources.gpus=2 or fewer" in errors[0]
    )
    assert elapsed < 10, f"took {elapsed:.1f} s"
    assert not (tmp_path / "run" / "wandb").exists()
