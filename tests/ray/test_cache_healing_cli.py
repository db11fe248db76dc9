"""The self-healing cache on the Ray path (the CLI, its DriverActor and expert actors): a rerun over a cache
with deleted and damaged entries logs each damaged file once, with its path, and answers as the first run did.
tests/unit/test_cache_healing.py covers each kind of damage in-process."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FAKE_DEMO, run_cli

pytestmark = [pytest.mark.ray]


def final_answers(run_dir) -> list:
    return [(r["id"], r["answers"]) for r in map(json.loads,
                                                 (run_dir / "final_answers.jsonl").read_text().splitlines())]


def stored_keys(cache) -> set[str]:
    return {json.loads(line)["key"] for shard in (cache / "generations").glob("*/*.jsonl")
            for line in shard.read_text().splitlines() if line.strip()}


def damage_cache(cache) -> tuple[set, list]:
    """Delete every third generation shard; garble a line of another, truncate a stage file, garble
    measurements.json. Returns (the generation keys deleted, the damaged files)."""
    shards = sorted((cache / "generations").glob("*/*.jsonl"))
    garbled = shards[1]
    deleted_keys = set()
    for shard in shards[::3]:
        deleted_keys |= {json.loads(line)["key"] for line in shard.read_text().splitlines()}
        shard.unlink()
    lines = garbled.read_text().splitlines()
    garbled.write_text("\n".join([lines[0], "{\"key\": \"truncat", *lines[1:]]) + "\n")
    stage_file = sorted((cache / "stages" / "profiles").glob("*.json"))[0]
    stage_file.write_text(stage_file.read_text()[: len(stage_file.read_text()) // 2])
    measurements = cache / "measurements.json"
    measurements.write_text("\x00\x00 not json")
    return deleted_keys, [garbled, stage_file, measurements]


def test_a_rerun_over_deleted_and_damaged_cache_entries_answers_as_the_first_run(tmp_path):
    cache = tmp_path / "cache"

    def cli(run: str):
        proc = run_cli([*FAKE_DEMO, f"cache_dir={cache}", f"hydra.run.dir={tmp_path / run}"], cwd=tmp_path,
                       timeout=400)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output[-3000:]
        return output, json.loads((tmp_path / run / "results.json").read_text())

    _, first = cli("first")
    deleted, damaged = damage_cache(cache)
    output, again = cli("again")
    for path in damaged:
        assert output.count(f"cache entry {path} is damaged") == 1, (path, output[-3000:])
        assert path.with_name(path.name + ".corrupt").is_file()
    assert "Traceback" not in output
    assert final_answers(tmp_path / "again") == final_answers(tmp_path / "first")
    assert again["aggregator"]["selected"] == first["aggregator"]["selected"]
    assert again["methods"]["symbolic_moe"]["accuracy"] == first["methods"]["symbolic_moe"]["accuracy"]
    # generations the rerun needs were generated again (never read as empty)
    assert deleted & stored_keys(cache)
