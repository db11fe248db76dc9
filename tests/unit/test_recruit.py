"""Symbolic-MoE recruitment (DESIGN section 3, step 5)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from skillmoe_ray.config import RecruitConfig
from skillmoe_ray.method.recruit import (
    Recruitment,
    local_scores,
    recruit_symbolic_moe,
    recruitment_distribution,
)

# Positive case for skills [a, b]: m1 local 2, m2 -1, m3 2, m4 not participating, m5 0.
PROFILES_POS = {
    "m1": {"a": 3, "b": -1},
    "m2": {"a": -1},
    "m3": {"b": 2},
    "m4": {"c": 5},
    "m5": {"a": 0, "b": 0},
}
GLOBAL_POS = {"m1": 0.1, "m2": 0.2, "m3": 0.3, "m4": 0.25, "m5": 0.15}
POOL_POS = ["m1", "m2", "m3", "m4", "m5", "m6"]  # m6 has no profile at all

# Non-positive case for skill [a]: m1 -2, m2 -1, m3 0, m4 not participating.
PROFILES_NEG = {"m1": {"a": -2}, "m2": {"a": -1, "b": 4}, "m3": {"a": 0}, "m4": {"c": 3}}
GLOBAL_NEG = {"m1": 0.4, "m2": 0.3, "m3": 0.1, "m4": 0.2}
POOL_NEG = ["m1", "m2", "m3", "m4"]


# --- local_scores --------------------------------------------------------------------------------


def test_local_scores_sum_over_present_skills():
    """Local score = sum of profile[m][s] over the instance's skills the model has entries for."""
    assert local_scores(PROFILES_POS, ["a", "b"]) == {"m1": 2, "m2": -1, "m3": 2, "m5": 0}


def test_local_scores_model_without_any_skill_entry_does_not_take_part():
    """A model with no entry for any of the skills is absent (not scored 0)."""
    scores = local_scores(PROFILES_POS, ["c"])
    assert scores == {"m4": 5}
    assert "m1" not in local_scores(PROFILES_POS, ["zzz"])


# --- recruitment_distribution --------------------------------------------------------------------


def test_distribution_positive_case():
    """Some local > 0: only positive models are candidates, weight local x global, normalized."""
    dist = recruitment_distribution(PROFILES_POS, ["a", "b"], GLOBAL_POS, POOL_POS)
    # weights: m1 2*0.1 = 0.2, m3 2*0.3 = 0.6; total 0.8
    assert dist == pytest.approx({"m1": 0.25, "m2": 0.0, "m3": 0.75, "m4": 0.0, "m5": 0.0, "m6": 0.0})


def test_distribution_nonpositive_case():
    """No local > 0: every participant weighted (local - min + 1) x global."""
    dist = recruitment_distribution(PROFILES_NEG, ["a"], GLOBAL_NEG, POOL_NEG)
    # min = -2: m1 1*0.4 = 0.4, m2 2*0.3 = 0.6, m3 3*0.1 = 0.3; total 1.3; m4 does not take part
    assert dist == pytest.approx({"m1": 0.4 / 1.3, "m2": 0.6 / 1.3, "m3": 0.3 / 1.3, "m4": 0.0})


def test_distribution_zero_local_scores_use_nonpositive_rule():
    """All local scores 0 is the non-positive case: weights (0 - 0 + 1) x global."""
    profiles = {"x": {"a": 0}, "y": {"a": 0}}
    dist = recruitment_distribution(profiles, ["a"], {"x": 0.2, "y": 0.6}, ["x", "y"])
    assert dist == pytest.approx({"x": 0.25, "y": 0.75})


def test_distribution_no_skills_is_uniform_over_pool():
    """An instance without skills: uniform over the whole pool."""
    dist = recruitment_distribution(PROFILES_POS, [], GLOBAL_POS, POOL_POS)
    assert dist == pytest.approx({m: 1 / 6 for m in POOL_POS})


def test_distribution_non_participant_gets_zero():
    """A pool model without entries for the skills gets probability 0 (others still sum to 1)."""
    dist = recruitment_distribution(PROFILES_NEG, ["a"], GLOBAL_NEG, POOL_NEG)
    assert dist["m4"] == 0.0
    assert sum(dist.values()) == pytest.approx(1.0)


# --- recruit_symbolic_moe ------------------------------------------------------------------------


def _sym(instance_skills, profiles, global_dist, pool, k, seed):
    """The Symbolic-MoE policy with recruit.k=k; its recruitments."""
    return recruit_symbolic_moe(instance_skills, profiles, global_dist, pool, RecruitConfig(k=k),
                                seed).recruitments


def _instances(n: int, skills: list[str]) -> dict[str, list[str]]:
    return {f"i{j}": list(skills) for j in range(n)}


def test_recruit_k_experts_per_instance_in_order():
    """Exactly k experts per instance, one Recruitment per instance, in input order."""
    inst = {"z": ["a", "b"], "y": ["a"], "x": []}
    out = _sym(inst, PROFILES_POS, GLOBAL_POS, POOL_POS, k=3, seed=0)
    assert [r.instance_id for r in out] == ["z", "y", "x"]
    assert all(len(r.experts) == 3 for r in out)
    assert out[0].skills == ("a", "b")


def test_recruit_draws_with_replacement():
    """Two candidates and k=5: some expert must be recruited more than once."""
    out = _sym(_instances(5, ["a", "b"]), PROFILES_POS, GLOBAL_POS, POOL_POS, k=5, seed=1)
    for r in out:
        assert len(r.experts) == 5
        assert max(Counter(r.experts).values()) >= 2


def test_recruit_reproducible_and_seed_dependent():
    """The same seed gives the same experts; another seed gives different draws."""
    inst = _instances(40, ["a"])
    a = _sym(inst, PROFILES_NEG, GLOBAL_NEG, POOL_NEG, k=3, seed=11)
    b = _sym(inst, PROFILES_NEG, GLOBAL_NEG, POOL_NEG, k=3, seed=11)
    c = _sym(inst, PROFILES_NEG, GLOBAL_NEG, POOL_NEG, k=3, seed=12)
    assert [r.experts for r in a] == [r.experts for r in b]
    assert [r.experts for r in a] != [r.experts for r in c]


def test_recruit_only_positive_probability_models_drawn():
    """Models with probability 0 are never recruited."""
    out = _sym(_instances(300, ["a", "b"]), PROFILES_POS, GLOBAL_POS, POOL_POS, k=3, seed=2)
    drawn = {e for r in out for e in r.experts}
    assert drawn == {"m1", "m3"}
    assert all(r.probabilities["m2"] == 0.0 for r in out)


def test_recruit_empirical_frequencies_match_distribution():
    """Over many instances, draw frequencies approach the recruitment distribution."""
    out = _sym(_instances(2000, ["a"]), PROFILES_NEG, GLOBAL_NEG, POOL_NEG, k=3, seed=3)
    counts = Counter(e for r in out for e in r.experts)
    total = sum(counts.values())
    assert total == 6000
    expected = {"m1": 0.4 / 1.3, "m2": 0.6 / 1.3, "m3": 0.3 / 1.3}
    for m, p in expected.items():
        assert counts[m] / total == pytest.approx(p, abs=0.03)
    assert counts["m4"] == 0


def test_recruit_no_skills_draws_uniformly_over_pool():
    """No skills: k uniform draws over the pool (every pool model shows up, roughly equally)."""
    out = _sym(_instances(600, []), PROFILES_POS, GLOBAL_POS, POOL_POS, k=3, seed=4)
    counts = Counter(e for r in out for e in r.experts)
    assert set(counts) == set(POOL_POS)
    for m in POOL_POS:
        assert counts[m] / 1800 == pytest.approx(1 / 6, abs=0.04)


def test_policy_registry_names_symbolic_moe():
    """The default policy is registered under 'symbolic_moe' and loads the recruit module's function."""
    from skillmoe_ray.registry import RECRUIT_POLICIES

    assert RECRUIT_POLICIES.load("symbolic_moe") is recruit_symbolic_moe


# --- Recruitment.to_dict -------------------------------------------------------------------------


def test_recruitment_to_dict_round_trip():
    """to_dict is plain JSON with lists, and rebuilds an equal Recruitment."""
    r = Recruitment("i1", ("a", "b"), ("m1", "m1", "m3"), {"m1": 0.25, "m3": 0.75})
    d = r.to_dict()
    assert d == {
        "instance_id": "i1",
        "skills": ["a", "b"],
        "experts": ["m1", "m1", "m3"],
        "probabilities": {"m1": 0.25, "m3": 0.75},
    }
    back = json.loads(json.dumps(d))
    rebuilt = Recruitment(
        back["instance_id"], tuple(back["skills"]), tuple(back["experts"]), back["probabilities"]
    )
    assert rebuilt == r


def test_the_rare_expert_rule_replaces_an_expert_holding_under_the_share_of_slots():
    from skillmoe_ray.method.recruit import Recruitment, replace_rare_experts

    probs = {"a": 0.5, "b": 0.4, "c": 0.1}
    recs = [Recruitment(f"q{i}", ("s",), ("a", "b", "a"), probs) for i in range(9)]
    recs.append(Recruitment("q9", ("s",), ("c", "a", "b"), probs))  # c: 1 of 30 slots, 3.3%
    new, rare = replace_rare_experts(recs, 0.05, seed=0)
    assert rare == ["c"]
    assert new[:9] == recs[:9] and "c" not in new[9].experts and new[9].experts[1:] == ("a", "b")
    assert replace_rare_experts(recs, 0.05, seed=0) == (new, rare)  # seeded
    assert replace_rare_experts(recs, 0.03, seed=0) == (recs, [])
    lonely = [Recruitment("q", ("s",), ("c",), {"c": 1.0})] + recs
    assert replace_rare_experts(lonely, 0.1, seed=0)[0][0].experts == ("c",)  # no other candidate: kept


def test_symbolic_moe_recruitment_applies_the_rare_expert_rule_when_configured():
    from skillmoe_ray.method.recruit import recruit_symbolic_moe

    profiles = {"a": {"s": 5}, "b": {"s": 4}, "c": {"s": 1}}
    skills = {f"q{i}": ["s"] for i in range(40)}
    dist = {"a": 0.45, "b": 0.45, "c": 0.1}
    plain = recruit_symbolic_moe(skills, profiles, dist, ["a", "b", "c"], RecruitConfig(k=3), seed=0)
    assert any("c" in r.experts for r in plain.recruitments) and "rare_experts_replaced" not in plain.info
    ruled = recruit_symbolic_moe(skills, profiles, dist, ["a", "b", "c"],
                                 RecruitConfig(k=3, rare_expert_share=0.05), seed=0)
    assert ruled.info["rare_experts_replaced"] == ["c"]
    assert not any("c" in r.experts for r in ruled.recruitments)


def test_every_registered_policy_has_the_recruit_policy_signature():
    import inspect

    from skillmoe_ray.method.recruit import RecruitPolicy
    from skillmoe_ray.registry import RECRUIT_POLICIES

    wanted = list(inspect.signature(RecruitPolicy.__call__).parameters)[1:]  # without self
    for name in RECRUIT_POLICIES.names():
        assert list(inspect.signature(RECRUIT_POLICIES.load(name)).parameters) == wanted, name
