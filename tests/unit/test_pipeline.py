"""The whole pipeline in-process (fake engine, no Ray): artifacts, caching, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skillmoe_ray.data import load_data
from skillmoe_ray.engines import create_engine
from skillmoe_ray.pipeline import Pipeline
from skillmoe_ray.scheduling.executor import SlotExecutor
from skillmoe_ray.scheduling.handles import LocalExpert
from skillmoe_ray.scheduling.policy import ExecutionPolicy
from tests.conftest import make_config, max_concurrency


def fake_embedder(name):
    """Deterministic bag-of-letters embeddings: no model download."""

    def embed(texts):
        vecs = np.zeros((len(texts), 26))
        for i, t in enumerate(texts):
            for ch in t:
                if ch.isalpha() and ch.isascii():
                    vecs[i, ord(ch.lower()) - 97] += 1
        return vecs + 1e-3

    return embed


def run_pipeline(cfg):
    executor = SlotExecutor(lambda name, slot=0: LocalExpert(create_engine(cfg.engine, cfg.pool[name])))
    val, test = load_data(cfg.data, cfg.seed)
    return Pipeline(cfg, executor, embedder_factory=fake_embedder).run(val, test), executor


def accuracies(results: dict) -> dict:
    """Accuracy per method and task (cost columns legitimately differ between a run and its cached rerun)."""
    return {name: (m["accuracy"], m["per_task"]) for name, m in results["methods"].items()}


@pytest.fixture
def cfg(tmp_path):
    return make_config(tmp_path)


def test_run_writes_every_artifact_and_results(cfg, tmp_path):
    results, _ = run_pipeline(cfg)
    run = tmp_path / "run"
    for name in ["skills.jsonl", "profiles.json", "aggregator.json", "recruitment.jsonl",
                 "expert_outputs.jsonl", "final_answers.jsonl", "results.json", "vocabulary.json"]:
        assert (run / name).is_file(), name
    on_disk = json.loads((run / "results.json").read_text())
    assert on_disk["experiment"] == "demo" and on_disk["n_instances"] == 40
    for method in ("symbolic_moe", "majority_vote"):
        assert 0.0 <= on_disk["methods"][method]["accuracy"] <= 1.0
    assert set(on_disk["stages"]) >= {"skills", "profiles", "mapping", "recruitment", "aggregator_selection",
                                      "inference", "aggregation"}
    assert all({"seconds", "cached"} <= set(s) for s in on_disk["stages"].values())
    assert {"expert", "stage", "slot", "start", "end"} <= set(on_disk["timeline"][0])
    assert sum(on_disk["activations"].values()) == len(
        [t for t in on_disk["timeline"] if t["kind"] != "resident"]
    )


def test_test_time_experts_not_needed_again_are_unloaded_not_put_to_sleep(cfg):
    """After recruitment the run knows every later stage's experts: the others are unloaded."""
    results, executor = run_pipeline(cfg)
    aggregator = results["aggregator"]["selected"]
    inference = [t["expert"] for t in results["timeline"] if t["stage"] == "inference"]
    asleep = {e for e, copy in executor.slots.copies.items() if copy.state == "sleeping"}
    assert inference and not (set(inference) - {aggregator}) & asleep
    assert results["deactivations"]["unload"] >= len(set(inference) - {aggregator}) > 0
    assert results["deactivations"]["sleep"] > 0  # before recruitment, experts still sleep


def test_profiles_and_recruitment_files_have_the_documented_shape(cfg, tmp_path):
    run_pipeline(cfg)
    profiles = json.loads((tmp_path / "run" / "profiles.json").read_text())
    assert set(profiles) == {s.name for s in cfg.experts}
    assert all(isinstance(v, int) for p in profiles.values() for v in p.values())
    rows = [json.loads(line) for line in (tmp_path / "run" / "recruitment.jsonl").read_text().splitlines()]
    assert len(rows) == 40
    for row in rows:
        assert {"instance_id", "skills", "experts", "probabilities"} <= set(row)
        assert len(row["experts"]) == cfg.recruit.k
        assert set(row["probabilities"]) == {s.name for s in cfg.experts}
        assert sum(row["probabilities"].values()) == pytest.approx(1.0)


def test_every_recruited_slot_gets_exactly_one_expert_output(cfg, tmp_path):
    run_pipeline(cfg)
    recruited = [
        json.loads(line) for line in (tmp_path / "run" / "recruitment.jsonl").read_text().splitlines()
    ]
    outputs = [
        json.loads(line) for line in (tmp_path / "run" / "expert_outputs.jsonl").read_text().splitlines()
    ]
    expected = sorted((r["instance_id"], slot, e) for r in recruited for slot, e in enumerate(r["experts"]))
    assert sorted((o["id"], o["slot"], o["expert"]) for o in outputs) == expected


def test_no_expert_is_activated_twice_in_a_stage(cfg):
    results, _ = run_pipeline(cfg)
    for stage, counts in results["activations_per_stage"].items():
        assert max(counts.values()) == 1, stage


def test_second_run_is_fully_cached_and_activates_nothing(cfg, tmp_path):
    first, _ = run_pipeline(cfg)
    second, executor = run_pipeline(cfg)
    assert all(s["cached"] for s in second["stages"].values())
    assert executor.slots.copies == {} and second["timeline"] == []
    assert accuracies(second) == accuracies(first)


def test_a_sweep_over_k_reuses_the_profile_stage(tmp_path):
    run_pipeline(make_config(tmp_path, ["recruit.k=3"], run_dir=tmp_path / "k3"))
    results, _ = run_pipeline(make_config(tmp_path, ["recruit.k=1"], run_dir=tmp_path / "k1"))
    assert results["stages"]["profiles"]["cached"] and results["stages"]["skills"]["cached"]
    assert not results["stages"]["recruitment"]["cached"]


def test_resume_after_losing_a_stage_regenerates_only_missing_groups(cfg, tmp_path):
    first, _ = run_pipeline(cfg)
    cache = tmp_path / "cache"
    for path in (cache / "stages" / "inference").glob("*.json"):
        path.unlink()
    inference_experts = {t["expert"] for t in first["timeline"] if t["stage"] == "inference"}
    lost = sorted(inference_experts)[0]
    shards = list((cache / "generations").glob(f"{lost}-*/*.jsonl"))
    inference_shard = max(
        shards, key=lambda p: sum(1 for line in p.read_text().splitlines() if '"answer/test' in line)
    )
    inference_shard.unlink()
    second, _ = run_pipeline(cfg)
    stage = second["stages"]["inference"]
    assert not stage["cached"]
    assert [t["expert"] for t in second["timeline"] if t["stage"] == "inference"] == [lost]
    assert stage["expert_groups_cached"] == len(inference_experts) - 1
    assert accuracies(second) == accuracies(first)


def test_a_sweep_over_the_competence_temperature_reuses_the_profile_stage(tmp_path):
    run_pipeline(make_config(tmp_path, ["recruit.competence_temperature=0.5"], run_dir=tmp_path / "t05"))
    results, _ = run_pipeline(
        make_config(tmp_path, ["recruit.competence_temperature=1.0"], run_dir=tmp_path / "t10")
    )
    assert results["stages"]["profiles"]["cached"]
    assert not results["stages"]["recruitment"]["cached"]


@pytest.mark.parametrize("gpus", [1, 2, 4])
def test_every_recruited_slot_gets_one_output_whatever_the_gpu_count(tmp_path, gpus):
    cfg = make_config(tmp_path, [f"resources.gpus={gpus}", "engine.options.delay_s=0.02"])
    executor = SlotExecutor(
        lambda name, slot=0: LocalExpert(create_engine(cfg.engine, cfg.pool[name])),
        ExecutionPolicy(n_slots=gpus),
    )
    val, test = load_data(cfg.data, cfg.seed)
    results = Pipeline(cfg, executor, embedder_factory=fake_embedder).run(val, test)
    recruited = [
        json.loads(line) for line in (tmp_path / "run" / "recruitment.jsonl").read_text().splitlines()
    ]
    outputs = [
        json.loads(line) for line in (tmp_path / "run" / "expert_outputs.jsonl").read_text().splitlines()
    ]
    assert sorted((o["id"], o["slot"], o["expert"]) for o in outputs) == sorted(
        (r["instance_id"], s, e) for r in recruited for s, e in enumerate(r["experts"])
    )
    assert 1 <= max_concurrency(results["timeline"]) <= gpus
    if gpus > 1:
        assert max_concurrency(results["timeline"]) > 1
    for stage, counts in results["activations_per_stage"].items():
        assert max(counts.values()) == 1, stage
    finals = [
        json.loads(line) for line in (tmp_path / "run" / "final_answers.jsonl").read_text().splitlines()
    ]
    assert all(row["key"] for row in finals)  # every instance was aggregated


def test_replicas_spread_the_keyword_stage_and_change_no_output(tmp_path):
    """Per-request seeds: the same outputs whichever copy of an expert generates them."""

    def outputs(run_dir, options):
        cfg = make_config(run_dir, ["resources.gpus=4"])
        executor = SlotExecutor(
            lambda name, slot=0: LocalExpert(create_engine(cfg.engine, cfg.pool[name])),
            ExecutionPolicy(n_slots=4, **options),
        )
        val, test = load_data(cfg.data, cfg.seed)
        results = Pipeline(cfg, executor, embedder_factory=fake_embedder).run(val, test)
        rows = [
            json.loads(line) for line in (run_dir / "run" / "expert_outputs.jsonl").read_text().splitlines()
        ]
        return results, sorted((r["id"], r["slot"], r["expert"], r["text"]) for r in rows)

    whole, plain = outputs(tmp_path / "whole", {})
    spread, replicated = outputs(tmp_path / "spread", {"max_replicas": 4, "replica_min_requests": 8})
    assert replicated == plain
    skills = [t for t in spread["timeline"] if t["stage"] == "skills"]
    assert (
        len({t["slot"] for t in skills}) == 4
        and sum(t["requests"] for t in skills) == whole["timeline"][0]["requests"]
    )
    assert 1 < max_concurrency(spread["timeline"]) <= 4
    # the aggregation stage runs after inference, dealt out over copies of the aggregator (not streamed)
    aggregation = [t for t in spread["timeline"] if t["stage"] == "aggregation"]
    assert len({t["slot"] for t in aggregation}) > 1 and spread["stages"]["aggregation"]["generated"] == 40


def test_with_several_gpus_aggregation_streams_into_the_inference_stage(tmp_path):
    cfg = make_config(tmp_path, ["resources.gpus=4", "engine.options.delay_s=0.05"])
    executor = SlotExecutor(
        lambda name, slot=0: LocalExpert(create_engine(cfg.engine, cfg.pool[name])),
        ExecutionPolicy(n_slots=4),
    )
    val, test = load_data(cfg.data, cfg.seed)
    results = Pipeline(cfg, executor, embedder_factory=fake_embedder).run(val, test)
    inference_end = max(t["end"] for t in results["timeline"] if t["stage"] == "inference")
    streamed = [
        t for t in results["timeline"] if t["stage"] == "aggregation" and t["start"] < inference_end + 1.0
    ]
    assert streamed, "aggregation groups ran inside the inference stage, on a free slot"
    phase = results["stages"]["aggregation"]
    assert phase["generated"] == 0 and phase["requests"] == 40  # the aggregation phase found them done


def test_dsmoe_steering_identifies_domain_experts_and_steers_only_moe_experts(tmp_path):
    def outputs(run):
        rows = [json.loads(line) for line in (run / "run" / "expert_outputs.jsonl").read_text().splitlines()]
        return {(r["id"], r["slot"], r["expert"]): r["text"] for r in rows}

    plain, _ = run_pipeline(make_config(tmp_path / "plain"))
    before = outputs(tmp_path / "plain")
    target = max(sorted({key[2] for key in before}), key=lambda e: sum(key[2] == e for key in before))
    moe = ["steering.enabled=true", f"+pool.models.{target}.moe=true"]
    steered, _ = run_pipeline(make_config(tmp_path / "steered", moe))
    report = steered["steering"]
    assert set(report["experts"]) == {target} and sum(report["experts"][target].values()) > 0
    assert sum(report["test_domains"].values()) == 40 and steered["stages"]["steering"]["generated"] > 0
    after = outputs(tmp_path / "steered")
    assert before.keys() == after.keys()
    changed = {key[2] for key, text in after.items() if before[key] != text}
    assert changed == {target}  # the MoE expert's steered answers differ; the dense experts' do not
    again, _ = run_pipeline(make_config(tmp_path / "steered", moe))
    assert again["stages"]["steering"]["cached"] and again["steering"] == report
    assert "steering" not in plain


def test_dsmoe_paper_score_with_global_selection_steers_the_moe_expert(tmp_path):
    moe = [
        "steering.enabled=true",
        "+pool.models.tiny-llama-a.moe=true",
        "steering.score=paper",
        "steering.selection=global",
        "steering.top_fraction=0.25",
    ]
    steered, _ = run_pipeline(make_config(tmp_path, moe))
    per_domain = steered["steering"]["experts"]["tiny-llama-a"]
    layers, experts = 2, 4  # the fake engine's MoE shape
    assert per_domain and all(0 < n <= round(0.25 * layers * experts) for n in per_domain.values())
    with pytest.raises(Exception, match="steering.score must be one of share, paper"):
        make_config(tmp_path, [*moe, "steering.score=eq8"])
