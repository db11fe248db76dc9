"""``make bench-serve`` end to end on one configuration: a real service process, its ready line, a window of
the official ``openai`` client over HTTP, the row written as JSON, the service stopped.

Minutes on 2 cores (the first configuration builds the validation profiles), so it runs only when asked:
``SKILLMOE_BENCH_TESTS=1 python -m pytest tests/ray/test_bench_serve.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

import pytest

pytestmark = [
    pytest.mark.ray,
    pytest.mark.engine,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("SKILLMOE_BENCH_TESTS") != "1", reason="set SKILLMOE_BENCH_TESTS=1"),
]


def test_every_model_pinned_resident_answers_with_no_load_in_the_window(tmp_path, monkeypatch):
    from skillmoe_ray.bench.serve import main

    monkeypatch.chdir(tmp_path)  # the service's cache (profiles, lab models) there
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # and its run directory and log
    out = tmp_path / "rows.json"
    assert main(["--configs", "c", "--concurrency", "2", "--window-s", "2", "--json", str(out)]) == 0
    [row] = json.loads(out.read_text())
    assert (row["config"], row["clients"], row["errors"], row["activations"]) == ("c", 2, {}, 0)
    assert row["ok"] > 0 and row["resident"] == 8 and row["first_request_s"] is not None
    assert row["vs_c"] == 1.0
    left = subprocess.run(["pgrep", "-f", f"hydra.run.dir={tmp_path}"], capture_output=True, text=True)
    assert left.stdout == ""  # the service process is gone
