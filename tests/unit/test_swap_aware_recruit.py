"""Swap-cost-aware recruitment (``recruit.cold_factor``, issue 22): off leaves the paper's rule exact; on, a
non-resident expert's weight is multiplied by the factor, a batch concentrates on fewer experts, and the
online router recruits against the scheduler's resident set."""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest

from skillmoe_ray.config import RecruitConfig
from skillmoe_ray.errors import ConfigError
from skillmoe_ray.method.recruit import recruit_settings, recruit_symbolic_moe, recruitment_distribution

# skills [a, b]: m1 local 2 (global 0.1), m3 local 2 (global 0.3), m2 negative, m4 not taking part;
# skill d: no local score above 0 (the paper's shifted weights)
PROFILES = {"m1": {"a": 3, "b": -1, "d": -1}, "m2": {"a": -1, "d": -2}, "m3": {"b": 2, "d": 0},
            "m4": {"c": 5}}
GLOBAL = {"m1": 0.1, "m2": 0.2, "m3": 0.3, "m4": 0.4}
POOL = ["m1", "m2", "m3", "m4"]
SKILL_SETS = [["a", "b"], ["a"], ["c"], [], ["zzz"], ["b", "c"], ["d"]]


@pytest.mark.parametrize("skills", SKILL_SETS)
def test_off_the_resident_set_changes_nothing(skills):
    plain = recruitment_distribution(PROFILES, skills, GLOBAL, POOL)
    assert recruitment_distribution(PROFILES, skills, GLOBAL, POOL, {"m1"}, 1.0) == plain


def test_off_recruitment_its_report_and_its_cache_key_are_those_of_before():
    skills = {f"q{i}": s for i, s in enumerate(SKILL_SETS * 4)}
    rc = RecruitConfig()
    plain = recruit_symbolic_moe(skills, PROFILES, GLOBAL, POOL, rc, 7)
    given = recruit_symbolic_moe(skills, PROFILES, GLOBAL, POOL, rc, 7, resident={"m3"})
    assert [r.to_dict() for r in given.recruitments] == [r.to_dict() for r in plain.recruitments]
    assert given.info == plain.info and "cold_factor" not in plain.info
    left_out = ("cold_factor", "avengers", "knn")
    settings = {key: value for key, value in asdict(rc).items() if key not in left_out}
    assert recruit_settings(rc) == settings  # the key of before both settings existed
    assert recruit_settings(replace(rc, cold_factor=0.5))["cold_factor"] == 0.5


@pytest.mark.parametrize("skills", [["a", "b"], [], ["d"]])
@pytest.mark.parametrize("factor", [0.5, 0.2])
def test_on_a_cold_experts_weight_is_multiplied_by_exactly_the_factor(skills, factor):
    """Relative to a resident one: the probability ratio cold / resident shrinks by the factor."""
    off = recruitment_distribution(PROFILES, skills, GLOBAL, POOL)
    on = recruitment_distribution(PROFILES, skills, GLOBAL, POOL, {"m1"}, factor)
    candidates = [m for m in POOL if off[m] > 0 and m != "m1"]
    assert candidates and sum(on.values()) == pytest.approx(1.0)
    for cold in candidates:
        assert on[cold] / on["m1"] == pytest.approx(factor * off[cold] / off["m1"], rel=1e-12)
    assert {m for m in POOL if on[m] > 0} == {m for m in POOL if off[m] > 0}  # no candidate added or lost


def test_on_with_every_candidate_cold_the_distribution_is_unchanged():
    off = recruitment_distribution(PROFILES, ["a", "b"], GLOBAL, POOL)
    assert recruitment_distribution(PROFILES, ["a", "b"], GLOBAL, POOL, set(), 0.2) == pytest.approx(off)


def test_in_batch_recruitment_concentrates_on_the_experts_already_planned():
    """Twelve equally good experts, ten questions in a fixed order: off, nearly all twelve answer; on, the
    draws favour the experts recruited for earlier questions, so fewer distinct experts are loaded, fewer
    the lower the factor; the same call gives the same recruitments."""
    pool = [f"e{i:02d}" for i in range(12)]
    profiles = {e: {"s": 1} for e in pool}
    dist = {e: 1 / len(pool) for e in pool}
    skills = {f"q{i}": ["s"] for i in range(10)}

    def distinct(factor: float, seed: int) -> int:
        result = recruit_symbolic_moe(skills, profiles, dist, pool, RecruitConfig(cold_factor=factor), seed)
        again = recruit_symbolic_moe(skills, profiles, dist, pool, RecruitConfig(cold_factor=factor), seed)
        assert [r.experts for r in result.recruitments] == [r.experts for r in again.recruitments]
        assert result.info["distinct_experts"] == len({e for r in result.recruitments for e in r.experts})
        return result.info["distinct_experts"]

    for seed in range(3):
        assert distinct(1.0, seed) >= 10
        assert distinct(0.05, seed) < distinct(0.2, seed) < distinct(1.0, seed)


@pytest.mark.parametrize("value", ["0", "-0.5", "1.5"])
def test_a_factor_outside_0_1_is_one_line_naming_the_key_and_the_range(tmp_path, value):
    from tests.conftest import make_config

    with pytest.raises(ConfigError) as caught:
        make_config(tmp_path, [f"recruit.cold_factor={value}"])
    message = str(caught.value)
    assert "\n" not in message and message.startswith("recruit.cold_factor must lie in (0, 1]")
    assert make_config(tmp_path, ["recruit.cold_factor=0.2"]).recruit.cold_factor == 0.2


def test_the_router_recruits_against_the_schedulers_resident_set(tmp_path):
    """Online, recruitment reads the models resident now (what /v1/stats ``resident`` reports): the
    recruitments served are the policy's with that set, not with nothing resident."""
    from skillmoe_ray.scheduling.policy import ExecutionPolicy
    from skillmoe_ray.serving.router import job_instance
    from tests.unit.test_online import QUESTIONS, job, router_for

    policy = ExecutionPolicy(gpu_memory_bytes=float("inf"))
    router, executor = router_for(tmp_path, ["recruit.cold_factor=0.2"], policy=policy)
    for expert in router.experts[:2]:  # the preparation left every model resident: two experts go cold
        executor.slots.discard(0, expert)
    resident = set(executor.resident_experts())
    assert 0 < len(resident & set(router.experts)) < len(router.experts)
    jobs = [job(q, route_only=True) for q in QUESTIONS[:6]]
    outcomes = router.answer(jobs)
    assert set(executor.resident_experts()) == resident  # routing only: nothing loaded meanwhile
    skills = {job_instance(j).id: o.skillmoe["mapped_skills"] for j, o in zip(jobs, outcomes)}
    args = (skills, router.prep.profiles, router.prep.distribution, router.experts, router.cfg.recruit,
            router.cfg.seed)
    served = [o.skillmoe["probabilities"] for o in outcomes]
    assert served == [r.probabilities for r in recruit_symbolic_moe(*args, resident=resident).recruitments]
    assert served != [r.probabilities for r in recruit_symbolic_moe(*args).recruitments]
