"""pyproject.toml says what the wheel holds: every package and data folder, the configs, the console
command, an SPDX license and bounded dependencies (tests/test_install.py builds and runs the wheel)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

tomllib = pytest.importorskip("tomllib")
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PROJECT["tool"]["setuptools"]


def _folders(root: Path, package: str) -> set[str]:
    """Dotted names of ``root`` and every folder under it whose name could be a package."""
    found = {package}
    for path in root.rglob("*"):
        parts = path.relative_to(root).parts
        if path.is_dir() and "__pycache__" not in parts and all(p.isidentifier() for p in parts):
            found.add(".".join((package, *parts)))
    return found


def test_every_package_and_data_folder_is_listed_with_conf_and_actors_under_the_projects_names():
    listed = set(SETUPTOOLS["packages"])
    wanted = _folders(REPO / "skillmoe_ray", "skillmoe_ray") | _folders(REPO / "conf", "skillmoe_ray.conf")
    wanted |= _folders(REPO / "actors", "skillmoe_ray_actors")
    assert wanted - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - wanted == set()
    assert SETUPTOOLS["package-dir"] == {"skillmoe_ray.conf": "conf", "skillmoe_ray_actors": "actors"}
    assert not any(name == "actors" or name.startswith("actors.") for name in listed)


def test_the_console_command_the_spdx_license_and_a_setuptools_that_reads_it():
    assert PROJECT["project"]["scripts"] == {"skillmoe-ray": "skillmoe_ray.run:cli"}
    assert PROJECT["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in PROJECT["build-system"]["requires"]


def test_the_ray_jobs_runtime_env_asks_for_the_same_ranges_as_pyproject():
    import yaml

    extras = PROJECT["project"]["optional-dependencies"]
    runtime = PROJECT["project"]["dependencies"] + extras["tracking"] + extras["gpu"]
    declared = {re.split(r"[<>=\[]", r)[0]: r for r in runtime}
    shipped = yaml.safe_load((REPO / "jobs" / "runtime_env.yaml").read_text())["pip"]
    for requirement in shipped:
        assert requirement == declared[re.split(r"[<>=\[]", requirement)[0]], requirement
    # the vLLM minor version that runs (its memory rules: engines/gpu_memory.py), on the nodes too
    assert extras["gpu"] == ["vllm>=0.32,<0.33"] and extras["gpu"][0] in shipped


def test_runtime_dependencies_have_floors_and_ceilings():
    extras = PROJECT["project"]["optional-dependencies"]
    runtime = PROJECT["project"]["dependencies"] + [d for name in ("gpu", "openai", "serving", "tracking")
                                                     for d in extras[name]]
    for requirement in runtime:
        assert ">=" in requirement and "<" in requirement, requirement
    transformers = next(r for r in runtime if r.startswith("transformers"))
    assert tuple(map(int, re.search(r">=(\d+)\.(\d+)", transformers).groups())) >= (
        4,
        56,
    )  # from_pretrained(dtype=)
    assert any(r.startswith("openai") for r in extras["openai"])


def test_a_plain_checkout_imports_the_actors_under_their_installed_name_without_any_install():
    """The repository root on sys.path and nothing installed (-S: no site-packages).

    As in a Ray Job's working_dir.
    """
    code = (
        "import importlib.util, skillmoe_ray_actors as a; "
        "print(a.__file__); print(importlib.util.find_spec('skillmoe_ray_actors.driver').origin)"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [str(REPO / "skillmoe_ray_actors.py"), str(REPO / "actors" / "driver.py")]
