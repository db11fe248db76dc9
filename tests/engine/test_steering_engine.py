"""DSMoE steering in the transformers engine, on a tiny random-weight Qwen3-MoE model (8 experts, top-2)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from skillmoe_ray.config import DemoConfig, ModelSpec
from skillmoe_ray.engines.base import GenRequest, Sampling, Steering
from skillmoe_ray.engines.hf_engine import HFEngine
from skillmoe_ray.errors import EngineError

pytestmark = pytest.mark.engine

TOWARD_0_AND_1 = Steering(50.0, tuple((layer, e) for layer in range(2) for e in (0, 1)))


@pytest.fixture(scope="module")
def moe_engine(tmp_path_factory):
    from skillmoe_ray.demo import ensure_demo_models

    root = tmp_path_factory.mktemp("moe")
    ensure_demo_models(DemoConfig(True, str(root), {"moe": {"arch": "qwen3_moe", "seed": 3}}))
    engine = HFEngine(ModelSpec(name="moe", path=str(root / "moe")), {"device": "cpu"}, "float32")
    engine.load()
    yield engine
    engine.unload()


def question(text: str = "Which enzyme digests starch in the mouth?") -> GenRequest:
    return GenRequest.make([{"role": "user", "content": text}], Sampling(12, 0.0, 1.0, 0))


def test_analysis_reports_routing_and_saliency_per_layer_and_expert(moe_engine):
    out = moe_engine.generate([replace(question(), analyze=True)])[0]
    counts, saliency = out.router["counts"], out.router["saliency"]
    assert out.text == "" and out.prompt_tokens > 5
    assert len(counts) == len(saliency) == 2 and all(len(row) == 8 for row in counts)
    for layer in range(2):
        assert sum(counts[layer]) == pytest.approx(2.0)  # top-2: every token goes to two experts
        assert sum(saliency[layer]) == pytest.approx(2.0) and min(saliency[layer]) >= 0
        assert sum(c > 0 for c in counts[layer]) > 2  # unsteered tokens spread over several experts


def test_steering_moves_the_routers_choice_to_the_domain_experts(moe_engine):
    out = moe_engine.generate([replace(question(), analyze=True, steering=TOWARD_0_AND_1)])[0]
    for row in out.router["counts"]:
        assert row[:2] == [1.0, 1.0] and sum(row[2:]) == 0


def test_steered_generation_differs_and_batches_apart_from_plain_requests(moe_engine):
    plain = moe_engine.generate([question()])[0].text
    steered = moe_engine.generate([replace(question(), steering=TOWARD_0_AND_1)])[0].text
    assert steered != plain
    mixed = moe_engine.generate([question(), replace(question(), steering=TOWARD_0_AND_1)])
    assert [o.text for o in mixed] == [plain, steered]  # the router hooks apply to their own batch only
    assert moe_engine.generate([question()])[0].text == plain  # and are gone afterwards


def test_a_dense_model_cannot_be_steered(tiny_model_dir):
    engine = HFEngine(ModelSpec(name="dense", path=str(tiny_model_dir)), {"device": "cpu"}, "float32")
    engine.load()
    try:
        with pytest.raises(EngineError, match="needs an MoE model"):
            engine.generate([replace(question(), steering=TOWARD_0_AND_1)])
    finally:
        engine.unload()


def test_analysis_splits_routing_by_saliency_decile_and_common_tokens_for_the_papers_score(moe_engine):
    import numpy as np

    from skillmoe_ray.config import SteeringConfig
    from skillmoe_ray.method.steering import choose_experts, score_experts

    # words of the demo vocabulary (the tiny model's tokenizer knows no others: the rest is <unk>, markup)
    questions = {
        "bio": [
            "When a ribosome joins two amino acids with a peptide bond, what type of reaction occurs?",
            "A woman who is a carrier of X-linked recessive color blindness has children.",
        ],
        "physics": [
            "An object moves with velocity v(t) = 3t^2 + 2 m/s. What is its displacement?",
            "What is the displacement of an object from t = 0 to t = 2 s?",
        ],
    }
    out = moe_engine.generate([replace(question(questions["bio"][0]), analyze=True)])[0]
    bins, common = np.array(out.router["bins"]), np.array(out.router["common"])
    assert bins.shape == (2, 8, 10) and common.shape == (2, 8)
    for layer in range(2):  # every token is routed to two experts, either as a common or a ranked token
        assert bins[layer].sum() + common[layer].sum() == pytest.approx(2.0)
        assert (
            common[layer].sum() > 0 and bins[layer].sum() > 0
        )  # "a", "with", "?" are common; "ribosome" is not
    records = [
        (domain, *(np.array(o.router[f]) for f in ("bins", "common")))
        for domain, texts in questions.items()
        for o in moe_engine.generate([replace(question(t), analyze=True) for t in texts])
    ]
    st = SteeringConfig(enabled=True, score="paper", selection="global", top_fraction=0.125)
    table = choose_experts(score_experts(records, st), st)
    assert set(table) == {"bio", "physics"} and all(len(pairs) <= 2 for pairs in table.values())
    assert any(table.values())  # some internal expert is specific to some domain on this model
