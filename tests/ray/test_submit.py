"""jobs/submit.py against a real Ray head node with its job server, started by the test on loopback.

The head is started with ``ray start --head --block`` in its own process group and stopped by
signalling that process (and, if anything lingers, that group) in teardown: ``ray stop`` would stop
every Ray cluster on the machine, not only this one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import FAKE_DEMO, REPO, TEST_CONF

pytestmark = pytest.mark.ray
SUBMIT = REPO / "jobs" / "submit.py"


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on loopback (from the ephemeral range, clear of Ray's worker ports)."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def wait_for_job_server(address: str, head: subprocess.Popen, log: Path, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if head.poll() is not None:
            pytest.fail(f"the Ray head exited ({head.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{address}/api/version", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    pytest.fail(f"the job server did not answer at {address}:\n{log.read_text()[-3000:]}")


def stop_head(head: subprocess.Popen) -> None:
    """SIGTERM the ``ray start --block`` process (it drains and stops its node), then clear its group."""
    head.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(timeout=90)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)  # whatever of this head's process group is still there


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A one-node Ray cluster (2 CPUs, 1 logical GPU) with its job server on loopback: (address, env)."""
    pytest.importorskip("aiohttp", reason="the Ray job server needs ray[default]")
    tmp = tmp_path_factory.mktemp("rayhead")
    gcs, dashboard, client, agent = free_ports(4)
    env = {**os.environ,
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    env.pop("PYTHONPATH", None)  # the job must run the code uploaded as its working_dir, not this checkout
    log = tmp / "head.log"
    with log.open("w") as out:
        head = subprocess.Popen(
            [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={gcs}",
             f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1", "--include-dashboard=true",
             f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
             "--num-cpus=2", "--num-gpus=1", "--disable-usage-stats"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    address = f"http://127.0.0.1:{dashboard}"
    try:
        wait_for_job_server(address, head, log)
        yield address, env
    finally:
        stop_head(head)


def runtime_env_file(tmp_path: Path) -> Path:
    """jobs/runtime_env.yaml as shipped, without its pip list (nothing may be downloaded here)."""
    runtime_env = yaml.safe_load((REPO / "jobs" / "runtime_env.yaml").read_text())
    runtime_env.pop("pip")
    runtime_env["env_vars"].update(HF_HUB_OFFLINE="1", WANDB_SILENT="true")
    path = tmp_path / "runtime_env.yaml"
    path.write_text(yaml.safe_dump(runtime_env))
    return path


def submit(ray_head, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    address, env = ray_head
    overrides = [f"hydra.searchpath=[file://{TEST_CONF}]", *FAKE_DEMO, f"cache_dir={tmp_path / 'cache'}",
                 f"hydra.run.dir={tmp_path / 'run'}", "tracking.mode=offline"]
    return subprocess.run(
        [sys.executable, str(SUBMIT), "--address", address, "--runtime-env", str(runtime_env_file(tmp_path)),
         *args, *overrides],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400,
    )


def test_submit_runs_the_demo_as_a_ray_job_follows_its_log_and_succeeds(ray_head, tmp_path):
    proc = submit(ray_head, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    job_id = proc.stdout.splitlines()[0]
    assert job_id.startswith("raysubmit_")
    assert f"job {job_id}: SUCCEEDED" in proc.stderr
    assert "experiment demo: 40 test / 40 validation instances" in proc.stdout  # the job's log, followed
    run_dir = tmp_path / "run"
    assert (run_dir / "results.json").is_file() and (run_dir / "report.md").is_file()
    assert f"report: {run_dir / 'report.md'}" in proc.stdout


def test_a_failing_job_makes_submit_exit_non_zero(ray_head, tmp_path):
    proc = submit(ray_head, tmp_path, "recruit.k=0")
    assert proc.returncode == 1
    assert "error: recruit.k must be >= 1, got 0" in proc.stdout
    assert proc.stderr.rstrip().endswith("FAILED")


def test_no_wait_prints_the_job_id_and_returns_without_following(ray_head, tmp_path):
    proc = submit(ray_head, tmp_path, "--no-wait",
                  "recruit.k=0")  # a job that fails: --no-wait must not notice
    assert proc.returncode == 0, proc.stderr[-3000:]
    (job_id,) = proc.stdout.splitlines()
    assert job_id.startswith("raysubmit_") and f"--follow {job_id}" in proc.stderr
