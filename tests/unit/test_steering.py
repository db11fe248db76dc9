"""DSMoE steering, the pure part: domain scores, expert selection, skill and query domains."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skillmoe_ray.engines.base import GenRequest, Sampling, Steering
from skillmoe_ray.errors import EngineError
from skillmoe_ray.method.steering import (
    domain_scores,
    query_domain,
    select_experts,
    skill_domains,
    steerer,
    steering_for,
)


def routed(layer_experts: list[list[int]], n_experts: int = 4) -> np.ndarray:
    """A counts matrix: each layer routes its tokens to the listed experts."""
    m = np.zeros((len(layer_experts), n_experts))
    for layer, experts in enumerate(layer_experts):
        m[layer, experts] = 1.0
    return m


def test_each_domain_gets_the_experts_it_uses_more_than_the_others():
    records = [("bio", routed([[0, 1], [2, 3]]), routed([[0, 1], [2, 3]])) for _ in range(3)]
    records += [("math", routed([[2, 3], [0, 1]]), routed([[2, 3], [0, 1]])) for _ in range(3)]
    table = select_experts(domain_scores(records), per_layer=2)
    assert sorted(table["bio"]) == [(0, 0), (0, 1), (1, 2), (1, 3)]
    assert sorted(table["math"]) == [(0, 2), (0, 3), (1, 0), (1, 1)]
    assert len(select_experts(domain_scores(records), per_layer=1)["bio"]) == 2  # one per layer


def test_saliency_breaks_a_tie_that_routing_frequency_leaves():
    counts = routed([[0, 1]])
    records = [("a", counts, np.array([[0.9, 0.1, 0, 0]])), ("b", counts, np.array([[0.1, 0.9, 0, 0]]))]
    assert select_experts(domain_scores(records, count_weight=0.5), 1) == {"a": [(0, 0)], "b": [(0, 1)]}
    assert select_experts(domain_scores(records, count_weight=1.0), 1) == {
        "a": [],
        "b": [],
    }  # no contrast left


def test_a_single_domain_is_compared_with_uniform_routing():
    table = select_experts(domain_scores([("only", routed([[3]]), routed([[3]]))]), per_layer=2)
    assert table == {"only": [(0, 3)]}  # the unused experts score below uniform: not steered


def test_skills_and_queries_take_the_majority_domain():
    domains = skill_domains(
        {"q1": ["enzymes", "algebra"], "q2": ["enzymes"], "q3": ["algebra"], "q4": ["algebra"]},
        {"q1": "bio", "q2": "bio", "q3": "math", "q4": "math"},
    )
    assert domains == {"enzymes": "bio", "algebra": "math"}
    assert query_domain(["enzymes", "enzymes", "algebra"], domains) == "bio"
    assert query_domain(["enzymes", "algebra"], domains) == "bio"  # a tie goes to the first name
    assert query_domain(["optics"], domains) is None


def test_steering_adds_log_one_plus_alpha_to_the_domain_experts_only():
    table = {"bio": [(1, 2), (0, 1)], "math": []}
    steering = steering_for(table, "bio", alpha=1.0)
    assert steering == Steering(round(math.log(2), 6), ((0, 1), (1, 2)))
    assert steering_for(table, "math", 1.0) is None and steering_for(table, None, 1.0) is None
    steer = steerer({"moe-expert": table}, {"i1": "bio", "i2": None}, 3.0)
    assert steer("moe-expert", "i1").bias == pytest.approx(math.log(4), abs=1e-6)
    assert steer("moe-expert", "i2") is None and steer("dense-expert", "i1") is None


def test_steering_and_analysis_change_a_requests_key_and_plain_keys_stay_as_they_were():
    from dataclasses import asdict

    from skillmoe_ray.seeding import stable_hash

    plain = GenRequest.make([{"role": "user", "content": "q"}], Sampling(8, 0.7, 1.0, 3))
    assert plain.key("fp") == stable_hash(["fp", plain.messages, asdict(plain.sampling)], 32)
    steered = GenRequest(plain.messages, plain.sampling, steering=Steering(0.69, ((0, 1),)))
    analyzed = GenRequest(plain.messages, plain.sampling, analyze=True)
    assert len({plain.key("fp"), steered.key("fp"), analyzed.key("fp")}) == 3


def test_an_engine_without_router_hooks_refuses_steered_requests():
    from skillmoe_ray.config import ModelSpec
    from skillmoe_ray.engines.fake import FakeEngine

    class Dense(FakeEngine):
        name = "dense"
        steerable = False

    engine = Dense(ModelSpec(name="d", path="fake/d"))
    engine.load()
    steered = GenRequest.make([{"role": "user", "content": "q"}], Sampling(8))
    with pytest.raises(EngineError, match="expert 'd': DSMoE steering needs engine=hf"):
        engine.generate([GenRequest(steered.messages, steered.sampling, analyze=True)])


def test_the_papers_score_is_specific_minus_common_activations_per_domain():
    from skillmoe_ray.method.steering import paper_scores

    # one layer, two experts; bins: 10 saliency deciles of non-common tokens; common: stopword/punctuation
    # share
    bins_q1 = np.zeros((1, 2, 10))
    bins_q1[0, 0, 9], bins_q1[0, 0, 2], bins_q1[0, 1, 8] = 0.3, 0.1, 0.2
    common_q1 = np.array([[0.1, 0.3]])
    bins_q2 = np.zeros((1, 2, 10))
    bins_q2[0, 0, 8] = 0.5
    common_q2 = np.array([[0.0, 0.5]])
    scores = paper_scores([("bio", bins_q1, common_q1), ("bio", bins_q2, common_q2)], percentile=80)
    # q1: specific (deciles 8-9) [0.3, 0.2] -> [0.6, 0.4]; common [0.1 + 0.1, 0.3] -> [0.4, 0.6]; difference
    # [0.2, -0.2]
    # q2: specific [0.5, 0] -> [1, 0]; common [0, 0.5] -> [0, 1]; difference [1, -1]; the domain's mean [0.6,
    # -0.6]
    assert scores["bio"] == pytest.approx(np.array([[0.6, -0.6]]))
    # at the 90th percentile decile 8 is common too: q1 specific [1, 0], common [0.2, 0.5] -> [2/7, 5/7], so
    # expert 0 scores 5/7; q2 has no specific token (all zero), common [0.5, 0.5]: -0.5; mean (5/7 - 0.5) / 2
    at_90 = paper_scores([("bio", bins_q1, common_q1), ("bio", bins_q2, common_q2)], 90)["bio"]
    assert at_90[0, 0] == pytest.approx((5 / 7 - 0.5) / 2)


def test_global_selection_takes_the_top_share_of_all_pairs_positive_only():
    from skillmoe_ray.method.steering import select_global

    scores = {"bio": np.array([[0.9, 0.1, -1.0, 0.0], [0.5, 0.8, -0.2, 0.3]]), "law": np.full((2, 4), -1.0)}
    table = select_global(scores, fraction=0.25)  # 2 of 8 pairs, wherever they are
    assert table["bio"] == [(0, 0), (1, 1)]
    assert select_global(scores, 0.5)["bio"] == [(0, 0), (1, 0), (1, 1), (1, 3)]
    assert table["law"] == [] and select_global(scores, 0.01)["bio"] == [(0, 0)]  # at least one pair


def test_stopwords_punctuation_and_markup_are_common_tokens():
    from skillmoe_ray.engines.moe_hooks import common_token_mask

    tokens = ["<|user|>", "ĠThe", "Ġenzyme", "▁amylase", ",", "Ġof", "Ġstarch", "?", "Ċ"]
    assert common_token_mask(tokens) == [True, True, False, False, True, True, False, True, True]
