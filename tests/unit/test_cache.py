"""The content-addressed caches: stage results and per-request generations persist across instances."""

from __future__ import annotations

from skillmoe_ray.cache import GenerationStore, StageCache, write_json


def test_stage_cache_roundtrip_and_key_depends_on_inputs(tmp_path):
    cache = StageCache(tmp_path)
    key = cache.key("profiles", {"k": 3})
    assert cache.get("profiles", key) is None
    cache.put("profiles", key, {"a": 1})
    assert StageCache(tmp_path).get("profiles", key) == {"a": 1}
    assert cache.key("profiles", {"k": 4}) != key
    assert cache.key("skills", {"k": 3}) != key


def test_generation_store_persists_each_group_as_a_shard(tmp_path):
    store = GenerationStore(tmp_path)
    store.save("model-a", [{"key": "k1", "text": "one"}, {"key": "k2", "text": "two"}])
    store.save("model-a", [{"key": "k3", "text": "three"}])
    fresh = GenerationStore(tmp_path)
    assert fresh.lookup("model-a", ["k1", "k3", "missing"]) == {
        "k1": {"key": "k1", "text": "one"},
        "k3": {"key": "k3", "text": "three"},
    }
    assert fresh.lookup("model-b", ["k1"]) == {}
    assert len(list((tmp_path / "generations" / "model-a").glob("*.jsonl"))) == 2


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    write_json(tmp_path / "x" / "r.json", {"ok": True})
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["r.json"]
