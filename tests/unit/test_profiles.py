"""Profiles, global competence and aggregator selection (DESIGN section 3, steps 3-4)."""

from __future__ import annotations

import random

import pytest

from skillmoe_ray.method.profiles import (
    build_profiles,
    competence_distribution,
    global_competence,
    select_aggregator,
    synthetic_aggregation_task,
)

SKILLS = {"q1": ["algebra", "geometry"], "q2": ["algebra"], "q3": ["optics"], "q4": []}


# --- build_profiles / global_competence ---------------------------------------------------------


def test_build_profiles_plus_one_minus_one_summed():
    """+1 per skill for a correct answer, -1 per skill for a wrong one, summed over questions."""
    correct = {
        "m1": {"q1": True, "q2": True, "q3": False},
        "m2": {"q1": False, "q2": True, "q3": False},
    }
    profiles = build_profiles(SKILLS, correct)
    assert profiles["m1"] == {"algebra": 2, "geometry": 1, "optics": -1}
    assert profiles["m2"] == {"algebra": 0, "geometry": -1, "optics": -1}


def test_build_profiles_instances_without_skills_contribute_nothing():
    """An instance with no skills (or unknown to the annotation) changes no profile entry."""
    correct = {"m": {"q4": True, "q_unknown": False, "q2": False}}
    assert build_profiles(SKILLS, correct)["m"] == {"algebra": -1}


def test_build_profiles_model_with_only_skill_less_answers_is_empty():
    """A model that answered only skill-less instances has an empty profile."""
    assert build_profiles(SKILLS, {"m": {"q4": True}}) == {"m": {}}


def test_global_competence_is_profile_sum():
    """Global competence of a model is the sum of its profile."""
    profiles = {"m1": {"a": 2, "b": 1, "c": -1}, "m2": {"a": -3}, "m3": {}}
    assert global_competence(profiles) == {"m1": 2, "m2": -3, "m3": 0}


# --- competence_distribution --------------------------------------------------------------------


def test_distribution_shifts_when_negative_and_squares():
    """min < 0: shift by (1 - min); T=0.5 squares; normalize. {-2,0,3} -> {1,3,6} -> {1,9,36}/46."""
    dist = competence_distribution({"a": -2, "b": 0, "c": 3}, temperature=0.5)
    assert dist == pytest.approx({"a": 1 / 46, "b": 9 / 46, "c": 36 / 46})


def test_distribution_default_temperature_is_half():
    """The default temperature is T=0.5 (competences squared)."""
    assert competence_distribution({"a": 1, "b": 2}) == pytest.approx({"a": 1 / 5, "b": 4 / 5})


def test_distribution_no_shift_when_min_nonnegative():
    """No shift when the smallest competence is >= 0: {0, 1, 3} -> {0, 1, 9}/10."""
    dist = competence_distribution({"a": 0, "b": 1, "c": 3}, temperature=0.5)
    assert dist == pytest.approx({"a": 0.0, "b": 0.1, "c": 0.9})


def test_distribution_all_zero_is_uniform():
    """All-zero competences give the uniform distribution."""
    dist = competence_distribution({"a": 0, "b": 0, "c": 0, "d": 0})
    assert dist == pytest.approx({"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25})


def test_distribution_temperature_one_keeps_proportions():
    """T=1 keeps the (shifted) competences' proportions."""
    dist = competence_distribution({"a": 2, "b": 6, "c": 12}, temperature=1.0)
    assert dist == pytest.approx({"a": 0.1, "b": 0.3, "c": 0.6})


def test_distribution_sums_to_one_and_is_monotone():
    """The result is a probability distribution ordered like the competences."""
    comp = {"a": -7, "b": -1, "c": 4, "d": 10}
    dist = competence_distribution(comp)
    assert sum(dist.values()) == pytest.approx(1.0)
    assert dist["a"] < dist["b"] < dist["c"] < dist["d"]


# --- synthetic_aggregation_task -----------------------------------------------------------------

RESP = {"m1": "R1", "m2": "W2", "m3": "W3", "m4": "W4", "m5": "R5"}
OK = {"m1": True, "m2": False, "m3": False, "m4": False, "m5": True}


def test_synthetic_task_one_correct_two_wrong():
    """Three responses: exactly one correct and two incorrect, when enough of each exist."""
    for seed in range(20):
        task = synthetic_aggregation_task(RESP, OK, random.Random(seed))
        assert len(task) == 3
        assert sum(r.startswith("R") for r in task) == 1
        assert sum(r.startswith("W") for r in task) == 2
        assert len(set(task)) == 3
        assert "" not in task


def test_synthetic_task_is_shuffled():
    """The correct response is not always first (nor always at one fixed position) over many seeds."""
    positions = set()
    for seed in range(50):
        task = synthetic_aggregation_task(RESP, OK, random.Random(seed))
        positions.add(next(i for i, r in enumerate(task) if r.startswith("R")))
    assert positions == {0, 1, 2}


def test_synthetic_task_no_correct_model_gives_one_empty():
    """No correct model: one empty string plus two wrong responses."""
    ok = {m: False for m in RESP}
    for seed in range(10):
        task = synthetic_aggregation_task(RESP, ok, random.Random(seed))
        assert sorted(task)[0] == ""
        assert task.count("") == 1
        assert len(task) == 3 and all(r in RESP.values() for r in task if r)


def test_synthetic_task_one_wrong_gives_one_empty():
    """Only one wrong response available: one correct, that wrong one, and one empty string."""
    resp = {"a": "Ra", "b": "Wb", "c": "Rc"}
    ok = {"a": True, "b": False, "c": True}
    for seed in range(10):
        task = synthetic_aggregation_task(resp, ok, random.Random(seed))
        assert task.count("") == 1
        assert task.count("Wb") == 1
        assert sum(r.startswith("R") for r in task) == 1


def test_synthetic_task_nothing_wrong_nothing_right():
    """Only correct responses: one correct plus two empty strings."""
    task = synthetic_aggregation_task({"a": "Ra"}, {"a": True}, random.Random(0))
    assert sorted(task) == ["", "", "Ra"]


def test_synthetic_task_deterministic_for_seed():
    """The same random.Random seed gives the same task."""
    a = synthetic_aggregation_task(RESP, OK, random.Random(123))
    b = synthetic_aggregation_task(RESP, OK, random.Random(123))
    assert a == b


def test_synthetic_task_independent_of_dict_order():
    """The result depends on the seed, not on the order models were inserted in the mappings."""
    reordered = dict(reversed(list(RESP.items())))
    a = synthetic_aggregation_task(RESP, OK, random.Random(7))
    b = synthetic_aggregation_task(reordered, OK, random.Random(7))
    assert a == b


# --- select_aggregator ---------------------------------------------------------------------------


def test_select_aggregator_max_accuracy():
    """The most accurate candidate wins."""
    assert select_aggregator({"a": 0.4, "b": 0.9, "c": 0.6}, ["a", "b", "c"]) == "b"


def test_select_aggregator_ties_go_to_earlier_candidate():
    """On a tie the candidate listed earlier wins, whatever the accuracy dict's order."""
    acc = {"c": 0.8, "b": 0.8, "a": 0.2}
    assert select_aggregator(acc, ["b", "c", "a"]) == "b"
    assert select_aggregator(acc, ["c", "b", "a"]) == "c"


def test_select_aggregator_only_considers_candidates():
    """Models that are not candidates are never chosen, however accurate."""
    assert select_aggregator({"x": 1.0, "a": 0.1, "b": 0.3}, ["a", "b"]) == "b"
