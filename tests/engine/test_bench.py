"""The activation and schedule benchmarks, run for real on tiny CPU models (as the GPU runbook runs them)."""

from __future__ import annotations

import json
import os

import pytest

from skillmoe_ray.bench import activation, schedule

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """Shared by both benchmarks, as in jobs/gpu_bench.sh: the schedule reuses the activation's weights."""
    return tmp_path_factory.mktemp("bench-models")


def test_activation_bench_times_every_phase_and_no_wake_on_cpu(models_dir, tmp_path, capsys):
    out = tmp_path / "activation.json"
    result = activation.main(["--preset", "tiny", "--device", "cpu", "--repeats", "2", "--max-tokens", "4",
                              "--models-dir", str(models_dir), "--json", str(out)])
    phases = result["phases"]
    for key in ("load_cold", "load_page_cache", "first_request_after_load", "steady_request"):
        assert phases[key]["seconds"] > 0 and len(phases[key]["all"]) == 2, key
    for key in ("sleep", "wake", "first_request_after_wake"):
        assert phases[key] == {"seconds": None, "note": "n/a on cpu"}
    assert result["weight_bytes"] > 1.9 * result["file_bytes"]  # float32 in memory, bfloat16 on disk
    assert json.loads(out.read_text())["phases"] == phases
    printed = capsys.readouterr().out
    assert "n/a on cpu" in printed and "load, cold from disk" in printed


def test_mincore_sees_files_read_into_the_page_cache(models_dir):
    files = [str(p) for p in (models_dir / "base-tiny").glob("*.safetensors")]
    assert files
    activation.read_through(files)
    cached = activation.resident_fraction(files)
    if cached is None:
        pytest.skip("mincore is not available here")
    assert cached > 0.9


def test_shared_weights_give_distinct_experts_over_one_inode(models_dir, tmp_path):
    out = tmp_path / "schedule.json"
    result = schedule.main(["--share-weights", "--experts", "3", "--instances", "4", "--k", "2",
                            "--max-tokens", "4",
                            "--models-dir", str(models_dir), "--json", str(out)])
    dirs = [models_dir / "shared" / f"bench-{i}" for i in range(3)]
    assert len({d.resolve() for d in dirs}) == 3
    inodes = {os.stat(d / "model.safetensors").st_ino for d in dirs}
    assert inodes == {os.stat(models_dir / "base-tiny" / "model.safetensors").st_ino}
    assert result["weights"] == "hardlink"
    assert result["same_outputs"] is True
    saved = json.loads(out.read_text())
    used = {t["expert"] for t in saved["grouped_timeline"]}
    assert result["grouped_activations"] == len(used) >= 2
    assert result["naive_activations"] >= result["grouped_activations"]
