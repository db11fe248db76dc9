"""A damaged or partly deleted cache heals: what is missing or unreadable is computed again, and the
results are those of an uninterrupted run. Files get the permissions of the user's umask."""

from __future__ import annotations

import json
import logging
import os
import stat

import pytest

from skillmoe_ray.cache import StageCache, write_atomic
from tests.conftest import make_config
from tests.unit.test_pipeline import run_pipeline


def final_answers(run_dir):
    return [(r["id"], r["answers"]) for r in map(json.loads,
                                                 (run_dir / "final_answers.jsonl").read_text().splitlines())]


@pytest.fixture
def first_run(tmp_path):
    results, _ = run_pipeline(make_config(tmp_path, run_dir=tmp_path / "first"))
    return tmp_path, results, final_answers(tmp_path / "first")


def rerun(tmp_path, name):
    results, _ = run_pipeline(make_config(tmp_path, run_dir=tmp_path / name))
    return results, final_answers(tmp_path / name)


def test_deleted_generations_are_generated_again_never_read_as_empty(first_run):
    tmp_path, results, answers = first_run
    shards = sorted((tmp_path / "cache" / "generations").glob("*/*.jsonl"))
    for shard in shards[::2]:
        shard.unlink()
    again, again_answers = rerun(tmp_path, "second")
    assert again["aggregator"]["selected"] == results["aggregator"]["selected"]
    assert again["aggregator"]["accuracy"] == results["aggregator"]["accuracy"]
    assert again_answers == answers


def test_damaged_stage_files_and_generation_lines_are_set_aside_and_recomputed(first_run, caplog):
    tmp_path, results, answers = first_run
    stage_file = sorted((tmp_path / "cache" / "stages" / "profiles").glob("*.json"))[0]
    stage_file.write_text(stage_file.read_text()[:100])  # truncated mid-write by some other tool
    shard = sorted((tmp_path / "cache" / "generations").glob("*/*.jsonl"))[0]
    lines = shard.read_text().splitlines()
    shard.write_text("\n".join(["{garbage", *lines[1:]]) + "\n")
    with caplog.at_level(logging.WARNING, logger="skillmoe_ray.cache"):
        again, again_answers = rerun(tmp_path, "second")
    assert again_answers == answers and again["aggregator"] == results["aggregator"]
    assert (
        f"cache entry {stage_file} is damaged" in caplog.text
        and f"cache entry {shard} is damaged" in caplog.text
    )
    assert stage_file.with_name(stage_file.name + ".corrupt").is_file()
    assert json.loads(stage_file.read_text())  # recomputed and stored again
    assert len(shard.read_text().splitlines()) == len(lines) - 1  # the good lines kept
    assert StageCache(tmp_path / "cache").get("profiles", stage_file.stem) is not None


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_are_written_with_the_umasks_permissions(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = write_atomic(tmp_path / "sub" / "x.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode


@pytest.mark.parametrize("damage", ["{not json", "[1, 2]"])
def test_a_damaged_measurements_file_is_set_aside_and_the_run_goes_on(first_run, damage):
    tmp_path, results, answers = first_run
    measurements = tmp_path / "cache" / "measurements.json"
    measurements.write_text(damage)
    again, again_answers = rerun(tmp_path, "second")
    assert again_answers == answers
    assert measurements.with_name("measurements.json.corrupt").read_text() == damage
