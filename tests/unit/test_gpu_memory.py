"""Memory accounting of vLLM experts: GPU shares, KV cache sizes, pinned host bytes, one footprint rule."""

from __future__ import annotations

import json

import pytest

from skillmoe_ray.config import CostConfig, EngineConfig, ModelSpec
from skillmoe_ray.engines import gpu_memory as gm
from skillmoe_ray.errors import EngineError
from skillmoe_ray.forecast.simulator import expert_figures
from skillmoe_ray.scheduling.executor import SlotExecutor
from skillmoe_ray.scheduling.handles import LocalExpert
from skillmoe_ray.scheduling.policy import ExecutionPolicy, execution_policy
from skillmoe_ray.scheduling.residency import engine_for_run, footprint
from tests.conftest import make_config
from tests.unit.test_executor import CountingEngine, groups

GIB = gm.GIB
LLAMA_8B = {"num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "hidden_size": 4096}


@pytest.mark.parametrize("free, need, expected", [
    (80 * GIB, 20 * GIB, 0.25),  # an empty 80 GiB GPU: the need, rounded up to a thousandth
    (80 * GIB - 1.5 * GIB, 20 * GIB, 0.25),  # one sleeper's residue: the share still fits what is free
    (20.03 * GIB, 20.01 * GIB, 0.25),  # the need rounds up past what is free: never more than is free
    (30 * GIB, 20.01 * GIB, 0.251),
])
def test_the_share_is_the_need_and_never_more_than_is_free(free, need, expected):
    share = gm.utilization_share(free, 80 * GIB, need)
    assert share == pytest.approx(expected)
    assert share * 80 * GIB <= free  # vLLM's start check: share x total must be free


def test_an_engine_that_does_not_fit_beside_the_sleepers_is_refused_with_the_figures():
    residue = 9 * gm.SLEEPER_RESIDUE_BYTES  # nine sleepers' contexts and graph pools
    with pytest.raises(EngineError, match=r"needs 70\.0 GiB but 66\.5 of 80\.0 GiB are free"):
        gm.utilization_share(80 * GIB - residue, 80 * GIB, 70 * GIB)
    with pytest.raises(EngineError):  # the configured cap bounds the share too
        gm.utilization_share(80 * GIB, 80 * GIB, 60 * GIB, cap=0.5)


def test_the_kv_cache_is_sized_from_the_batch_not_from_the_gpu(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_8B))
    per_token = gm.kv_bytes_per_token(LLAMA_8B, "bfloat16")
    assert per_token == 2 * 32 * 8 * 128 * 2  # 128 KiB: keys and values, 8 KV heads of 128
    config = gm.model_config_of(str(tmp_path))
    kv = gm.kv_cache_bytes(config, "bfloat16", 64, 32768, 4096, {})
    assert kv == 64 * (4096 + gm.PROMPT_TOKENS) * per_token and 30 * GIB < kv < 45 * GIB
    assert gm.kv_cache_bytes(config, "bfloat16", 64, 32768, 4096, {"kv_cache_memory_bytes": 5}) == 5
    assert gm.model_config_of("org/hub-model-not-cached") is None  # nothing downloaded
    assert gm.kv_cache_bytes(None, "bfloat16", 64, 32768, 4096, {}) is None
    assert gm.kv_tokens(1, 8192, 16) == 8192  # at least one full-length request, or vLLM refuses to start


def test_max_num_seqs_is_capped_by_the_largest_batch(tmp_path):
    assert gm.capped_max_num_seqs(256, 64) == 64 and gm.capped_max_num_seqs(16, 64) == 16
    assert gm.capped_max_num_seqs(256, 0) == 256
    cfg = make_config(tmp_path, ["engine=vllm", "scheduler.chunk_requests=32"])
    assert engine_for_run(cfg).options["max_num_seqs"] == 32


def test_pinned_backups_are_charged_with_their_margin_on_a_gpu_only():
    assert gm.sleeping_host_bytes(10e9, "cuda") == pytest.approx(10e9 * gm.PINNED_MARGIN)
    assert gm.sleeping_host_bytes(10e9, "cpu") == 10e9


class GpuEngine(CountingEngine):
    """A sleepable fake engine that says it runs on CUDA (its sleeps pin host memory)."""

    def _load(self):
        super()._load()
        self.info.device = "cuda"


def test_the_host_ram_budget_refuses_a_sleep_and_frees_the_room_when_a_sleeper_wakes():
    CountingEngine.calls, CountingEngine.sleepable = [], True
    one_sleeper = 10 * gm.PINNED_MARGIN  # weight bytes 10: one pinned backup fits, two do not
    ex = SlotExecutor(lambda name, slot=0: LocalExpert(GpuEngine(ModelSpec(name=name, path=f"fake/{name}"))),
                      ExecutionPolicy(host_ram_bytes=one_sleeper * 1.5, probe_after_wake=False))
    ex.run_stage("s1", groups("a", "b", "c"), [], lambda g, o, t: None)
    assert ("sleep", "a") in CountingEngine.calls and ("unload", "b") in CountingEngine.calls
    assert ex.slots.copies["a"].sleeping_bytes == pytest.approx(one_sleeper)
    # s2: c unloads (a's backup still holds the room), a wakes and releases it, so a may sleep again after
    ex.run_stage("s2", groups("a", "b"), [], lambda g, o, t: None)
    assert ("unload", "c") in CountingEngine.calls and ("wake", "a") in CountingEngine.calls
    assert CountingEngine.calls.count(("sleep", "a")) == 2 and ex.slots.copies["a"].state == "sleeping"
    assert sum(c.sleeping_bytes for c in ex.slots.copies.values()) == pytest.approx(one_sleeper)
    ex.slots.discard(0, "a")  # a sleeper dropped (unloaded) releases its host RAM too
    assert ex.slots.copies["a"].sleeping_bytes == 0


def test_mode_plan_and_the_executor_use_one_footprint(tmp_path, monkeypatch):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps(LLAMA_8B))
    cfg = make_config(tmp_path, ["engine=vllm", "resources.gpu_memory_gb=80"])
    calls = []
    monkeypatch.setattr("skillmoe_ray.scheduling.residency.footprint",
                        lambda spec, *a, **k: calls.append(spec.name) or 7.0)
    planned = expert_figures(cfg, {}, {name: name for name in cfg.pool}, True)
    executed = execution_policy(cfg).footprint  # what PlacementScheduler gives the executor
    names = list(cfg.pool)
    assert {name: fig.footprint_bytes for name, fig in planned.items()} == {n: executed(n, 0) for n in names}
    assert sorted(calls) == sorted([*cfg.pool, *cfg.pool])
    monkeypatch.undo()
    spec = ModelSpec(name="m", path=str(tmp_path / "m"), max_model_len=32768, max_tokens=4096)
    engine = EngineConfig("vllm", options={"gpu_memory_utilization": 0.85, "max_num_seqs": 64})
    kv = gm.kv_cache_bytes(LLAMA_8B, "bfloat16", 64, 32768, 4096, {})
    assert footprint(spec, engine, 80, CostConfig(), 1.2, 16e9) == gm.engine_need(16e9, kv) < 0.85 * 80e9
