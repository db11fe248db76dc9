"""The lab's trained models load in both engines like any hub model, and keep their skills there."""

from __future__ import annotations

import pytest

from skillmoe_ray.config import EngineConfig, ModelSpec
from skillmoe_ray.engines.base import GenRequest, Sampling
from skillmoe_ray.lab.world import generate_split
from skillmoe_ray.method.aggregate import expert_messages, extract_answer, is_correct

pytestmark = pytest.mark.engine
CPU_OPTIONS = {"enforce_eager": True, "gpu_memory_utilization": 0.05, "cpu_kvcache_gb": 1, "max_num_seqs": 64}


def score(outputs, instances, skill: str) -> float:
    pairs = [(o, i) for o, i in zip(outputs, instances) if i.subject == skill]
    return sum(is_correct(extract_answer(o.text, i), i) for o, i in pairs) / len(pairs)


def requests(instances):
    return [GenRequest.make(expert_messages(i), Sampling(16, 0.0, 1.0, n)) for n, i in enumerate(instances)]


@pytest.mark.ray
def test_vllm_cpu_runs_a_lab_expert_good_at_its_skills_only(ray_cluster, lab_models):
    from skillmoe_ray_actors.expert import ExpertActor

    test = generate_split("test", 80, 0)
    spec = ModelSpec(name="lab-llama-a", path=str(lab_models / "lab-llama-a"), max_model_len=512,
                     max_tokens=16)
    actor = (
        ray_cluster.remote(ExpertActor)
        .options(num_gpus=0.01)
        .remote(spec, EngineConfig("vllm", "bfloat16", CPU_OPTIONS))
    )
    try:
        ray_cluster.get(actor.load.remote(), timeout=300)
        outputs = ray_cluster.get(actor.generate.remote(requests(test)), timeout=300)
    finally:
        ray_cluster.kill(actor)
    assert outputs[0].text.startswith("The answer is")  # the tokenizer round-trips through vLLM's detokenizer
    assert score(outputs, test, "country code") >= 0.8 and score(outputs, test, "largest number") >= 0.8
    assert score(outputs, test, "metres to cm") <= 0.2  # not its skill


def test_transformers_runs_the_keyword_model_in_the_skill_stages_format(lab_models):
    from skillmoe_ray.engines.hf_engine import HFEngine
    from skillmoe_ray.method.skills import keyword_messages, parse_keywords

    test = generate_split("test", 40, 1)
    engine = HFEngine(
        ModelSpec(name="lab-keyword", path=str(lab_models / "lab-keyword"), max_tokens=12),
        {"device": "cpu", "batch_size": 40},
        "bfloat16",
    )
    engine.load()
    try:
        outputs = engine.generate(
            [GenRequest.make(keyword_messages(i), Sampling(12, 0.0, 1.0, 0)) for i in test]
        )
    finally:
        engine.unload()
    named = [parse_keywords(o.text) == [i.subject] for o, i in zip(outputs, test)]
    assert sum(named) / len(named) >= 0.9


def test_a_question_too_long_for_a_models_context_is_refused_before_any_model_loads(lab_models, tmp_path):
    import json

    from tests.conftest import run_cli

    rows = [
        {"question": "What is 3 plus 4?", "gold_answer": "7"},
        {"id": "long-1", "question": "What is 3 plus 4? " * 120, "gold_answer": "7"},
    ]
    data, val = tmp_path / "long.jsonl", tmp_path / "val.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    val.write_text(json.dumps({"question": "What is 2 plus 2?", "gold_answer": "4"}) + "\n")
    proc = run_cli(
        [
            "+experiment=skill_lab",
            "data=local",
            f"data.val.path={val}",
            f"data.test.path={data}",
            f"lab.models_dir={lab_models}",
            f"cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert (
        len(line) == 1
        and "instance long-1: its prompt is 750 tokens" in line[0]
        and "for the keyword model 'lab-keyword'" in line[0]  # the first model to read it
    )
    assert "Traceback" not in proc.stderr and not (tmp_path / "cache" / "stages").exists()  # nothing ran
