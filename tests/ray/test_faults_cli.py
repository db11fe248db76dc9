"""Faults, round three (issue 24), as a user meets them on the command line: one line and an exit code for
an expert that always fails, for Ctrl-C and for a full cache disk; reruns resume from the cache."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import FAKE_DEMO, TEST_CONF, make_full, run_cli, unmount

pytestmark = [pytest.mark.ray]
# Log records (ours forwarded from the DriverActor, and Ray's own) are not the error report.
LOG_LINE = re.compile(r"^(\x1b\[\d+m)?\(\w+ pid=\d+|^\d{4}-\d\d-\d\d[ T][\d:,.]+\s")


def report_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not LOG_LINE.match(line)]


def generated(log) -> list[str]:
    return (
        [json.loads(line)["request"] + json.loads(line)["model"] for line in open(log)]
        if log.exists()
        else []
    )


def test_an_expert_that_always_fails_is_one_line_and_exit_2_with_the_traceback_in_run_log(tmp_path):
    run = tmp_path / "run"
    proc = run_cli(
        [
            *FAKE_DEMO,
            f"cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={run}",
            "+engine.options.fail_models=[tiny-llama-a]",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = report_lines(proc.stderr)
    assert len(lines) <= 3 and lines[-1].startswith("error: expert tiny-llama-a failed in stage"), lines
    assert (
        "EngineError: fake failure of expert 'tiny-llama-a'" in lines[-1] and "rerun to resume" in lines[-1]
    )
    assert "Traceback" in (run / "run.log").read_text()


def test_ctrl_c_is_one_line_exit_130_and_the_rerun_resumes(tmp_path):
    args = [
        sys.executable,
        "-m",
        "skillmoe_ray.run",
        f"hydra.searchpath=[file://{TEST_CONF}]",
        *FAKE_DEMO,
        f"cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"engine.options.request_log={tmp_path / 'requests.jsonl'}",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(tmp_path / "err", "w") as err:
        proc = subprocess.Popen(
            [*args, "engine.options.request_delay_s=0.05"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            # Ctrl-C's default action: a parent that ignores SIGINT (an xdist worker, a shell's `cmd &`)
            # would pass the ignoring on, and the run would never see the signal
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            # two chunks (64 requests each) generated: the first is stored (the "chunk stored" log line is
            # throttled, so it is no signal)
            deadline = time.monotonic() + 300
            while len(generated(tmp_path / "requests.jsonl")) < 2 * 64 and time.monotonic() < deadline:
                assert proc.poll() is None, "the run ended before it could be interrupted"
                time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=120)
        finally:
            proc.kill()
    assert code == 130
    lines = report_lines((tmp_path / "err").read_text())
    assert lines == [
        "interrupted (Ctrl-C): finished chunks and stages are kept in the cache; "
        "rerun the same command to resume"
    ], lines
    first = generated(tmp_path / "requests.jsonl")
    second = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    everything = generated(tmp_path / "requests.jsonl")
    # a stored chunk is never generated again: at most the chunk in flight (64 requests) is
    assert len(everything) - len(set(everything)) <= 64 and len(first) > 0


def test_a_full_cache_disk_stops_the_run_naming_the_path_loading_no_expert_twice_and_the_rerun_resumes(
    tmp_path,
):
    cache = tmp_path / "cache"
    words = make_full(cache)
    args = [
        *FAKE_DEMO,
        f"cache_dir={cache}",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"engine.options.request_log={tmp_path / 'requests.jsonl'}",
    ]
    try:
        proc = run_cli(args, cwd=tmp_path)
    finally:
        unmount(cache)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = report_lines(proc.stderr)
    assert len(lines) <= 3 and lines[-1].startswith("error: cannot write the generation cache at "), lines
    assert str(cache / "generations") in lines[-1] and words in lines[-1] and "free" in lines[-1]
    first = generated(tmp_path / "requests.jsonl")
    assert len(first) == len(set(first)) and proc.stderr.count("active on slot") == 1  # one load, no retry
    os.unlink(cache / "generations")  # room again
    second = run_cli(args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
