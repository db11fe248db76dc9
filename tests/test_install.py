"""The package as a user installs it: a wheel built from the repository, installed (not editable) into a
fresh virtual environment outside the repository, runs the console command from another directory.

The fresh environment borrows the dependencies (torch, vLLM, Ray...) of the one running the tests
through a .pth file instead of installing them again; a .pth line only adds a directory to sys.path, so
the editable install's finder in that directory stays inactive and ``skillmoe_ray`` can come only from
the wheel.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.conftest import REPO

# What a wheel is built from (tests, jobs and the virtual environment are not part of it; the checkout alias
# skillmoe_ray_actors.py is copied to show that it stays out)
SOURCES = ["pyproject.toml", "README.md", "skillmoe_ray", "conf", "actors", "skillmoe_ray_actors.py"]


def _run(cmd: list, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def build_wheel(tmp: Path) -> Path:
    """A wheel of a clean copy of the repository's sources (an in-tree build would leave build/ behind)."""
    source = tmp / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy2)(REPO / name, source / name, **(
            {"ignore": ignore} if (REPO / name).is_dir() else {}))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist",
          source],
         cwd=tmp)
    return next((tmp / "dist").glob("skillmoe_ray-*.whl"))


def fresh_venv(root: Path) -> tuple[Path, Path]:
    """A new virtual environment whose sys.path ends with this environment's site-packages; (python, bin)."""
    subprocess.run([sys.executable, "-m", "venv", root], check=True, timeout=300)
    python = root / "bin" / "python"
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   cwd=root).stdout.strip()
    borrowed = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    Path(purelib, "borrowed-dependencies.pth").write_text("\n".join(dict.fromkeys(borrowed)) + "\n")
    return python, root / "bin"


def test_a_wheel_installed_outside_the_repository_runs_the_console_command(tmp_path):
    wheel = build_wheel(tmp_path)
    names = set(subprocess.run([sys.executable, "-m", "zipfile", "-l", wheel], capture_output=True,
                               text=True).stdout.split())
    assert "skillmoe_ray/conf/config.yaml" in names and "skillmoe_ray/conf/experiment/demo.yaml" in names
    # no generic top-level package beside everyone else's
    assert not any(n.startswith("actors/") for n in names)
    assert (
        "skillmoe_ray_actors/driver.py" in names and "skillmoe_ray_actors.py" not in names
    )  # not the checkout alias

    python, bin_dir = fresh_venv(tmp_path / "venv")
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "SKILLMOE_CACHE_DIR")
    }
    where = _run(
        [
            python,
            "-c",
            "import skillmoe_ray.run as r, skillmoe_ray_actors as a; print(r.__file__); "
            "print(r.CONF_DIR); print(a.__file__)",
        ],
        cwd=elsewhere,
        env=env,
    ).stdout.split()
    installed = str(tmp_path / "venv")
    assert all(path.startswith(installed) for path in where), where
    assert not any(path.startswith(str(REPO)) for path in where), where

    args = ["+experiment=demo", "engine=fake", "mode=plan"]
    command = _run([bin_dir / "skillmoe-ray", *args], cwd=elsewhere, env=env).stdout
    module = _run([python, "-m", "skillmoe_ray.run", *args], cwd=elsewhere, env=env).stdout
    assert "predicted makespan" in command and "tiny-aggregator" in command, command[-2000:]
    assert _plan(command) == _plan(module)
    assert not (REPO / "build").exists()


def _plan(stdout: str) -> str:
    """The plan's table, without the log lines around it."""
    return stdout[stdout.index("predicted makespan") :]
