"""Shared fixtures: composed configs, a tiny random-weight model, a local Ray cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_CONF = REPO / "tests" / "conf"
# Overrides that turn the demo experiment into a fast, model-free run with the fake engine.
FAKE_DEMO = ["+experiment=demo", "engine=fake", "pool=fake", "demo.build_models=false"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# W&B never goes online from a test, even where the developer is logged in, and prints nothing.
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ.pop("WANDB_API_KEY", None)


def compose_tree(overrides: list[str]) -> dict:
    """The resolved config tree Hydra composes for ``overrides`` (tests' pool dir on the search path)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    search = f"hydra.searchpath=[file://{TEST_CONF}]"
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[search, *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def make_config(tmp_path: Path, overrides: list[str] = (), run_dir: Path | None = None):
    """A validated RunConfig of the fake demo with its cache and run directory under ``tmp_path``."""
    from skillmoe_ray.config import load_config

    tree = compose_tree([*FAKE_DEMO, f"cache_dir={tmp_path / 'cache'}", *overrides])
    return load_config(tree, str(run_dir or tmp_path / "run"))


def run_cli(args: list[str], cwd: Path, env: dict | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m skillmoe_ray.run ARGS`` in a subprocess, as a user would run it.

    ``env`` None values are unset.
    """
    merged = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env = {k: v for k, v in merged.items() if v is not None}
    return subprocess.run(
        [sys.executable, "-m", "skillmoe_ray.run", f"hydra.searchpath=[file://{TEST_CONF}]", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def make_full(cache) -> str:
    """Make ``cache``'s generation store unwritable the way a full disk does: a small tmpfs, filled, where
    this machine allows mounting one; else a symlink loop in its place (ELOOP). Returns the error's words."""
    cache.mkdir(exist_ok=True)
    gens, full = cache / "generations", cache / "full"
    if gens.exists():
        os.rename(gens, cache / "generations.old")
    full.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)]
    if subprocess.run(mount, capture_output=True, check=False).returncode != 0:
        os.symlink(gens, gens)
        return "Too many levels of symbolic links"
    os.symlink(full, gens)
    try:
        with open(full / "filler", "wb", buffering=0) as f:
            while True:
                f.write(b"\0" * 4096)
    except OSError:  # the disk is full
        pass
    return "No space left on device"


def unmount(cache) -> None:
    subprocess.run(["umount", str(cache / "full")], capture_output=True, check=False)


@pytest.fixture(scope="session", autouse=True)
def wandb_sandbox(tmp_path_factory):
    """W&B's own settings, cache and staging directories under a temporary directory, not the home.

    Every process a test starts inherits them, so a W&B process that outlives its test can be found
    by its environment (see :func:`wandb_processes`). The in-process W&B service is torn down at the end.
    """
    root = tmp_path_factory.mktemp("wandb-home")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        os.environ[var] = str(root / var.lower())
    yield root
    if "wandb" in sys.modules and sys.modules["wandb"] is not None:
        sys.modules["wandb"].teardown()


def wandb_processes(sandbox: Path) -> list:
    """Live processes started under this test session's W&B sandbox (wandb-core and its helpers)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["name"]):
        try:
            if "wandb" in (proc.info["name"] or "") and proc.environ().get("WANDB_CONFIG_DIR", "").startswith(
                str(sandbox)
            ):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def max_concurrency(timeline) -> int:
    """Most timeline entries overlapping at one moment (experts active at once)."""
    events = sorted(
        [(t["start"], 1) for t in timeline] + [(t["end"], -1) for t in timeline], key=lambda e: (e[0], e[1])
    )
    now = peak = 0
    for _, delta in events:
        now += delta
        peak = max(peak, now)
    return peak


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random-weight Llama with the locally trained demo tokenizer (built, never downloaded)."""
    from skillmoe_ray.config import DemoConfig
    from skillmoe_ray.demo import ensure_demo_models

    root = tmp_path_factory.mktemp("models")
    ensure_demo_models(DemoConfig(True, str(root), {"tiny": {"arch": "llama", "seed": 1}}))
    return root / "tiny"


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster with 2 CPUs and 4 logical GPUs, shut down after the session."""
    import ray

    from skillmoe_ray_actors.cluster import init_local_ray

    init_local_ray(address="local", num_cpus=2, num_gpus=4, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


class JSONHandler(BaseHTTPRequestHandler):
    """Base of the tests' stand-in HTTP servers (OpenAI-compatible APIs): JSON in, JSON out, no log."""

    def json_body(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def reply(self, body: dict, status: int = 200, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free local port in a thread; yields the API root (``http://.../v1``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()


@pytest.fixture(scope="session")
def lab_models(tmp_path_factory) -> Path:
    """The skill lab's models of +experiment=skill_lab.

    The shipped trained copies; trained if out of date.
    """
    from skillmoe_ray.lab.build import ensure_lab_models

    root = tmp_path_factory.mktemp("lab-models")
    ensure_lab_models(compose_tree(["+experiment=skill_lab"])["lab"]["models"], str(root))
    return root
