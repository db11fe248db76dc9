"""The rival routers (avengers, knn) on hand-made embeddings whose best models are known."""

from __future__ import annotations

import numpy as np
import pytest

from skillmoe_ray.config import AvengersConfig, KnnConfig, RecruitConfig
from skillmoe_ray.config.checks import check_router_sizes
from skillmoe_ray.errors import ConfigError
from skillmoe_ray.method.catalog import MethodContext, build_plans
from skillmoe_ray.method.recruit import Recruitment, recruit_with_policy
from skillmoe_ray.method.rivals import QuestionEvidence, knn_scores, recruit_avengers, recruit_knn
from tests.conftest import make_config

POOL = ["m1", "m2", "m3"]
# Two groups of validation questions: a0-a2 near (1, 0), b0-b2 near (0, 1)
VAL = {"a0": (1.0, 0.05), "a1": (0.98, 0.1), "a2": (1.0, -0.05), "b0": (0.05, 1.0), "b1": (0.1, 0.98),
       "b2": (-0.05, 1.0)}
# m1 masters the a's, m2 the b's; m3 is decent on both (2 of 3 a's, 1 of 3 b's)
RIGHT = {"m1": {"a0", "a1", "a2"}, "m2": {"b0", "b1", "b2"}, "m3": {"a0", "a1", "b0"}}
TEST = {"qa": (0.9, 0.1), "qb": (0.1, 0.9)}


def evidence(right=RIGHT, val=VAL, test=TEST) -> QuestionEvidence:
    correct = {m: {v: v in right[m] for v in val} for m in POOL}
    return QuestionEvidence(tuple(val), np.array(list(val.values())), correct,
                            {t: np.array(x) for t, x in test.items()})


def experts(result) -> dict[str, tuple[str, ...]]:
    return {r.instance_id: r.experts for r in result.recruitments}


def avengers(k: int, ev: QuestionEvidence, seed: int = 0, n_clusters: int = 2) -> dict:
    rc = RecruitConfig(policy="avengers", k=k, avengers=AvengersConfig(n_clusters=n_clusters))
    return experts(recruit_with_policy({t: [] for t in ev.test_embeddings}, {}, {}, POOL, rc, seed, ev))


def test_avengers_recruits_the_best_models_of_the_nearest_cluster():
    assert avengers(1, evidence()) == {"qa": ("m1",), "qb": ("m2",)}
    # second best: m3 (2/3 on the a cluster, 1/3 on the b cluster) before the model with none right there
    assert avengers(2, evidence()) == {"qa": ("m1", "m3"), "qb": ("m2", "m3")}
    # past the pool's size the ranking repeats (a model's next sample)
    assert avengers(4, evidence())["qa"] == ("m1", "m3", "m2", "m1")


def test_avengers_breaks_ties_by_whole_validation_accuracy_then_pool_order():
    # m1 and m3 both perfect on the a cluster: m3, right on b0 too, is more accurate overall
    right = {**RIGHT, "m3": {"a0", "a1", "a2", "b0"}}
    assert avengers(2, evidence(right))["qa"] == ("m3", "m1")
    # m1 and m3 equal everywhere: pool order
    right = {**RIGHT, "m3": RIGHT["m1"]}
    assert avengers(2, evidence(right))["qa"] == ("m1", "m3")


def test_avengers_is_seeded_and_reports_its_settings():
    rng = np.random.default_rng(3)
    val = {f"v{i}": tuple(rng.normal(size=5)) for i in range(40)}
    right = {m: {v for v in val if rng.random() < 0.5} for m in POOL}
    test = {f"t{i}": tuple(rng.normal(size=5)) for i in range(10)}
    ev = evidence(right, val, test)
    assert avengers(2, ev, seed=7, n_clusters=5) == avengers(2, ev, seed=7, n_clusters=5)
    rc = RecruitConfig(policy="avengers", k=2, avengers=AvengersConfig(n_clusters=5))
    result = recruit_avengers({t: ["s"] for t in test}, {}, {}, POOL, rc, 7, ev)
    assert result.info["policy"] == "avengers" and result.info["n_clusters"] == 5
    assert all(sum(r.probabilities.values()) == pytest.approx(1) for r in result.recruitments)
    assert result.recruitments[0].skills == ("s",)


def test_knn_scores_each_model_on_the_nearest_validation_questions():
    rc = RecruitConfig(policy="knn", k=2, knn=KnnConfig(n_neighbors=3))
    result = recruit_knn({t: [] for t in TEST}, {}, {}, POOL, rc, 0, evidence())
    assert experts(result) == {"qa": ("m1", "m3"), "qb": ("m2", "m3")}
    assert result.info["n_neighbors"] == 3


def test_knn_weighs_a_neighbour_by_its_closeness():
    val = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8]])
    correct = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # model 0 right on the nearest only
    scores = knn_scores(val, correct, np.array([[1.0, 0.001]]), n_neighbors=3)
    assert scores[0, 0] > 0.9 > 0.1 > scores[0, 1]  # unweighted, model 1 would lead 2/3 to 1/3
    far = knn_scores(val, correct, np.array([[0.7, 0.7]]), n_neighbors=2)  # the two at 0.8/0.6 and 0.6/0.8
    assert far[0].tolist() == [0.0, 1.0]


def test_knn_an_identical_validation_question_weighs_most_even_when_rounding_puts_it_past_1():
    val = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    correct = np.array([[1.0, 0.0], [0.0, 1.0]])
    scores = knn_scores(val, correct, val[:1] * 3.0, n_neighbors=2)  # cosine 1 up to rounding
    assert np.all(np.isfinite(scores)) and scores[0, 0] > 0.99 > 0.01 > scores[0, 1] >= 0.0


def test_the_embedding_routers_refuse_to_run_without_evidence():
    with pytest.raises(ValueError, match="QuestionEvidence"):
        recruit_knn({"q": []}, {}, {}, POOL, RecruitConfig(policy="knn"), 0)


def test_the_rival_methods_combine_by_vote_or_the_aggregator():
    from skillmoe_ray.data.instances import Instance

    test = [Instance("q", "t", "?", "A", "choice", ("a", "b"))]
    routed = {"avengers": {"q": Recruitment("q", (), ("m1", "m1", "m2"), {})}}
    ctx = MethodContext(test, POOL, {}, "m3", {}, 3, 0, routed=routed, combine={"avengers": "vote"})
    [plan] = build_plans(["avengers"], ctx)
    assert plan.slots == {"q": [("m1", 0), ("m1", 1), ("m2", 0)]} and plan.aggregator == {"q": None}
    ctx = MethodContext(test, POOL, {}, "m3", {}, 3, 0, routed=routed, combine={"avengers": "aggregator"})
    assert build_plans(["avengers"], ctx)[0].aggregator == {"q": "m3"}


@pytest.mark.parametrize("override, message", [
    ("recruit.avengers.n_clusters=0", "recruit.avengers.n_clusters must be >= 1, got 0"),
    ("recruit.knn.n_neighbors=-2", "recruit.knn.n_neighbors must be >= 1, got -2"),
    ("recruit.knn.combine=mean", "recruit.knn.combine: unknown rule 'mean'; valid rules: vote, aggregator"),
    ("recruit.policy=knearest", "recruit.policy: unknown recruitment policy 'knearest'; available: "),
])
def test_bad_router_settings_fail_at_config_load_naming_the_key(tmp_path, override, message):
    with pytest.raises(ConfigError) as err:
        make_config(tmp_path, [override])
    assert str(err.value).startswith(message)


def test_more_clusters_or_neighbours_than_validation_questions_are_refused_where_used(tmp_path):
    cfg = make_config(tmp_path, ["mode=compare", "compare.methods=[symbolic_moe,avengers]",
                                 "recruit.avengers.n_clusters=50", "recruit.knn.n_neighbors=50"])
    with pytest.raises(ConfigError, match=r"^recruit.avengers.n_clusters=50 exceeds the 40 validation"):
        check_router_sizes(cfg, 40)
    check_router_sizes(cfg, 50)
    cfg = make_config(tmp_path, ["recruit=knn", "recruit.knn.n_neighbors=50"])
    with pytest.raises(ConfigError, match=r"^recruit.knn.n_neighbors=50 exceeds the 40 .*at most 40$"):
        check_router_sizes(cfg, 40)
    check_router_sizes(make_config(tmp_path, ["recruit.knn.n_neighbors=50"]), 40)  # knn not used: fine


@pytest.mark.slow
def test_a_comparison_adds_the_rival_routers_without_generating_on_the_validation_split_again(tmp_path):
    """mode=compare with avengers and knn after a comparison without them: the profiles stage (the
    validation answers) is read from the cache, and each rival gets rows and a recruitment of its own;
    recruit=avengers makes it a run's recruitment."""
    from tests.unit.test_pipeline import run_pipeline

    first, _ = run_pipeline(make_config(tmp_path, ["mode=compare", "compare.methods=[symbolic_moe]"]))
    assert first["stages"]["profiles"]["cached"] is False
    overrides = ["mode=compare", "compare.methods=[symbolic_moe,avengers,knn]",
                 "recruit.knn.combine=aggregator"]
    results, _ = run_pipeline(make_config(tmp_path, overrides))
    assert results["stages"]["profiles"]["cached"] is True
    assert {"recruitment_avengers", "recruitment_knn"} <= set(results["stages"])
    assert results["methods"]["avengers"]["note"] == "combined by vote"
    assert results["methods"]["knn"]["note"] == "combined by aggregator"
    assert results["rival_recruitment"]["avengers"]["n_clusters"] == 8
    assert results["rival_recruitment"]["knn"]["mean_k"] == 3.0
    run, _ = run_pipeline(make_config(tmp_path, ["recruit=avengers"]))  # the run's own recruitment
    assert run["recruitment"]["policy"] == "avengers" and run["stages"]["profiles"]["cached"] is True
