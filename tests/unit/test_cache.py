"""The content-addressed caches: stage results and per-request generations persist across instances."""

from __future__ import annotations

from skillmoe_ray.cache import GenerationStore, StageCache, write_json
from skillmoe_ray.engines.base import GenOutput
from skillmoe_ray.records import Generation


def test_stage_cache_roundtrip_and_key_depends_on_inputs(tmp_path):
    cache = StageCache(tmp_path)
    key = cache.key("profiles", {"k": 3})
    assert cache.get("profiles", key) is None
    cache.put("profiles", key, {"a": 1})
    assert StageCache(tmp_path).get("profiles", key) == {"a": 1}
    assert cache.key("profiles", {"k": 4}) != key
    assert cache.key("skills", {"k": 3}) != key


def generation(key: str, text: str) -> Generation:
    return Generation(key, f"tag-{key}", GenOutput(text, 3, 4, "stop"), 0.5)


def test_generation_store_persists_each_group_as_a_shard(tmp_path):
    store = GenerationStore(tmp_path)
    store.save("model-a", [generation("k1", "one"), generation("k2", "two")])
    store.save("model-a", [generation("k3", "three")])
    fresh = GenerationStore(tmp_path)
    assert fresh.lookup("model-a", ["k1", "k3", "missing"]) == {
        "k1": generation("k1", "one"),
        "k3": generation("k3", "three"),
    }
    assert fresh.lookup("model-b", ["k1"]) == {}
    assert len(list((tmp_path / "generations" / "model-a").glob("*.jsonl"))) == 2


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    write_json(tmp_path / "x" / "r.json", {"ok": True})
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["r.json"]


def test_a_generation_is_stored_as_the_json_line_the_store_has_always_held(tmp_path):
    """Shards written before the Generation type read back, and new lines have the same fields."""
    import json

    old = {"key": "k1", "tag": "profile/q1/0", "text": "The answer is 4", "prompt_tokens": 12,
           "output_tokens": 5, "finish_reason": "stop", "router": {"counts": [[1, 2]]}, "seconds": 0.25}
    shard = tmp_path / "generations" / "model-a" / "old.jsonl"
    shard.parent.mkdir(parents=True)
    shard.write_text(json.dumps(old) + "\n")
    found = GenerationStore(tmp_path).lookup("model-a", ["k1"])["k1"]
    assert (found.text, found.output_tokens, found.router, found.seconds, found.failed) == (
        "The answer is 4", 5, {"counts": [[1, 2]]}, 0.25, False)
    assert found.to_json() == old and list(found.to_json()) == list(old)
    failure = Generation.failure("k2", "expert x failed: boom")
    assert failure.failed and failure.error == "expert x failed: boom" and failure.text == ""
