"""make lab-table's launcher end to end on the fake demo: a compare run per seed, one table from their
results, and a second call that runs nothing (the table's math: tests/unit/test_seed_table.py)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import FAKE_DEMO, TEST_CONF

# slow: two compare runs (each its own Ray start) and a cached call
pytestmark = [pytest.mark.ray, pytest.mark.slow]


def launch(tmp_path, out) -> subprocess.CompletedProcess:
    overrides = [f"hydra.searchpath=[file://{TEST_CONF}]", *FAKE_DEMO[1:], f"cache_dir={tmp_path / 'cache'}",
                 "tracking=disabled"]
    command = [sys.executable, "-m", "skillmoe_ray.reporting.lab_table", "--experiment", "demo",
               "--seeds", "0", "1", "--out", str(out), "--", *overrides]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=500,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_lab_table_runs_each_seed_once_and_tabulates_them(tmp_path):
    out = tmp_path / "tables"
    first = launch(tmp_path, out)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "seed 0 (1/2): running mode=compare" in first.stdout
    assert "seed 1 (2/2): running mode=compare" in first.stdout
    runs = sorted((out / "demo").glob("seed*/results.json"))
    assert [p.parent.name.split("-")[0] for p in runs] == ["seed0", "seed1"]
    methods = list(json.loads(runs[0].read_text())["methods"])
    with open(out / "demo" / "table.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == methods and {r["seeds"] for r in rows} == {"0 1"}
    markdown = (out / "demo" / "table.md").read_text()
    assert markdown in first.stdout and "| symbolic_moe |" in markdown
    second = launch(tmp_path, out)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "seed 0 (1/2): cached" in second.stdout and "seed 1 (2/2): cached" in second.stdout
    assert "running" not in second.stdout
    assert (out / "demo" / "table.md").read_text() == markdown  # the same runs: the same table
