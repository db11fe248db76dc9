"""The pipeline through real Ray actors (DriverActor, ExpertActors, logical GPUs), fake engine."""

from __future__ import annotations

import json

import pytest

from skillmoe_ray.data import load_data
from skillmoe_ray_actors.cluster import run_pipeline
from tests.conftest import make_config, max_concurrency

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_run(ray_cluster, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("raypipe")
    cfg = make_config(tmp, ["resources.gpus=1"])
    val, test = load_data(cfg.data, cfg.seed)
    return cfg, run_pipeline(cfg, val, test, show_progress=False), tmp


def test_results_json_is_written_by_the_driver_actor(ray_run):
    cfg, results, tmp = ray_run
    on_disk = json.loads((tmp / "run" / "results.json").read_text())
    assert on_disk["n_instances"] == 40
    assert on_disk["methods"].keys() == {"symbolic_moe", "majority_vote"}


def test_one_gpu_never_has_two_experts_active(ray_run):
    _, results, _ = ray_run
    spans = sorted((t["start"], t["end"], t["expert"]) for t in results["timeline"])
    assert len(spans) >= 8
    for (_, e0, a), (s1, _, b) in zip(spans, spans[1:]):
        assert e0 <= s1, f"{a} and {b} overlap"


def test_each_expert_is_activated_at_most_once_per_stage(ray_run):
    _, results, _ = ray_run
    for stage, counts in results["activations_per_stage"].items():
        assert set(counts.values()) == {1}, stage


def test_expert_actors_release_their_gpu_shares_after_the_run(ray_cluster, ray_run):
    """Experts hold a share of a logical GPU while alive; the scheduler kills them at the end."""
    import time

    deadline = time.time() + 10
    while ray_cluster.available_resources().get("GPU", 0) < 4 and time.time() < deadline:
        time.sleep(0.2)
    assert ray_cluster.available_resources().get("GPU", 0) == pytest.approx(4)


def test_four_logical_gpus_run_up_to_four_experts_at_once_and_never_more(ray_cluster, tmp_path):
    cfg = make_config(tmp_path, ["resources.gpus=4", "engine.options.delay_s=0.5"])
    val, test = load_data(cfg.data, cfg.seed)
    results = run_pipeline(cfg, val, test, show_progress=False)
    assert max_concurrency(results["timeline"]) == 4
    for stage, counts in results["activations_per_stage"].items():
        assert set(counts.values()) == {1}, stage
    slots = {t["expert"]: t["slot"] for t in results["timeline"] if t["stage"] == "profiles"}
    assert sorted(set(slots.values())) == [0, 1, 2, 3]


def test_co_resident_experts_are_activated_once_for_the_whole_run(ray_cluster, ray_run, tmp_path):
    """With GPU memory for the whole pool (~19 GB per 8B-sized fake expert), no expert is loaded twice."""
    _, one_at_a_time, _ = ray_run
    cfg = make_config(tmp_path, ["resources.gpus=1", "resources.gpu_memory_gb=200"])
    val, test = load_data(cfg.data, cfg.seed)
    results = run_pipeline(cfg, val, test, show_progress=False)
    assert set(results["activations"].values()) == {1}
    assert sum(results["activations"].values()) < sum(one_at_a_time["activations"].values())
    assert (
        results["methods"]["symbolic_moe"]["accuracy"] == one_at_a_time["methods"]["symbolic_moe"]["accuracy"]
    )


def test_replicas_of_the_keyword_model_run_as_separate_actors_on_four_gpus(ray_cluster, ray_run, tmp_path):
    """The skills stage (one expert) spreads over four actors, one per logical GPU; answers are unchanged."""
    _, one_gpu, _ = ray_run
    cfg = make_config(
        tmp_path, ["resources.gpus=4", "scheduler.max_replicas=4", "engine.options.delay_s=0.2"]
    )
    val, test = load_data(cfg.data, cfg.seed)
    results = run_pipeline(cfg, val, test, show_progress=False)
    skills = [t for t in results["timeline"] if t["stage"] == "skills"]
    assert sorted(t["slot"] for t in skills) == [0, 1, 2, 3]
    assert sorted(t.get("replica", 0) for t in skills) == [0, 1, 2, 3]
    assert max_concurrency(results["timeline"]) <= 4
    assert results["methods"]["symbolic_moe"]["accuracy"] == one_gpu["methods"]["symbolic_moe"]["accuracy"]


def test_an_expert_actor_that_dies_mid_group_is_replaced_and_the_answers_do_not_change(
    ray_cluster, ray_run, tmp_path
):
    """The actor's process exits during its first answer group (as an OOM kill would); the run goes on."""
    _, baseline, base_dir = ray_run
    marker = tmp_path / "died"
    cfg = make_config(tmp_path, ["resources.gpus=1", f"+engine.options.die_once=answer:{marker}"])
    val, test = load_data(cfg.data, cfg.seed)
    results = run_pipeline(cfg, val, test, show_progress=False)
    assert marker.is_file()  # an actor really died
    retried = [t for t in results["timeline"] if t.get("retries")]
    assert len(retried) == 1 and retried[0]["expert"] == marker.read_text()
    assert (
        "died" in retried[0]["retries"][0]["error"].lower()
        or "actor" in retried[0]["retries"][0]["error"].lower()
    )
    from skillmoe_ray.reporting.summary import format_summary

    assert f"retried: expert {marker.read_text()} in stage {retried[0]['stage']}" in format_summary(
        results, str(tmp_path)
    )

    def answers(run_dir):
        return [
            json.loads(line)["answers"] for line in (run_dir / "final_answers.jsonl").read_text().splitlines()
        ]

    assert answers(tmp_path / "run") == answers(base_dir / "run")
    assert results["methods"]["symbolic_moe"]["accuracy"] == baseline["methods"]["symbolic_moe"]["accuracy"]
