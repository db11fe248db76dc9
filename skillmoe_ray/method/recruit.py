"""Recruitment: which experts answer each test instance.

DESIGN section 3, step 5 (Symbolic-MoE). The local score of a model for an instance is the sum of
its profile over the instance's skills; models with no profile entry for any of them do not take
part. If some local score is positive, the candidates are the positive models weighted by
local x global competence; otherwise every participant, weighted by (local - min + 1) x global.
k experts are drawn with replacement from that distribution, seeded per instance. An instance
without skills (or without participants) gets k uniform draws over the pool.

Swap-cost-aware recruitment (``recruit.cold_factor``, off at 1.0): the weight of every expert that is not
resident is multiplied by the factor before normalizing, so a model already loaded is preferred and fewer
loads are paid, at the cost of some skill fit. What "resident" means is data the caller passes in (this
module knows nothing of the scheduler): online, the models resident in the scheduler now; in batch, none
at the start. Either way the experts recruited for earlier instances of the same call count as resident
(they will be loaded for those anyway), so a batch concentrates on fewer experts.

The ``budgeted`` policy (DESIGN section 6, USMoE) turns the same distributions into a suitability
matrix, mixes an instance view and an expert view of it (:func:`unified_scores`), and chooses all
(instance, expert) pairs at once under a global budget with :func:`assign_budgeted`.

The rival routers ``avengers`` and ``knn`` (:mod:`skillmoe_ray.method.rivals`) route by question
embeddings instead, given as a :class:`~skillmoe_ray.method.rivals.QuestionEvidence`.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from skillmoe_ray.budget.assignment import Assignment, assign_budgeted, unified_scores  # noqa: F401 (re-exported)
from skillmoe_ray.config import RecruitConfig
from skillmoe_ray.seeding import derive_seed

if TYPE_CHECKING:
    from skillmoe_ray.method.rivals import QuestionEvidence


@dataclass(frozen=True)
class Recruitment:
    """The experts recruited for one instance and the distribution they were drawn from."""

    instance_id: str
    skills: tuple[str, ...]
    experts: tuple[str, ...]
    probabilities: dict[str, float]

    def to_dict(self) -> dict:
        """Plain-JSON form, for recruitment.jsonl and the stage cache."""
        return {**asdict(self), "skills": list(self.skills), "experts": list(self.experts)}

    @staticmethod
    def from_dict(data: dict) -> Recruitment:
        """The recruitment ``to_dict`` wrote; ValueError when ``data`` is not one (a damaged cache entry)."""
        try:
            return Recruitment(data["instance_id"], tuple(data["skills"]), tuple(data["experts"]),
                               data["probabilities"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a recruitment: {exc!r}") from exc


def local_scores(profiles: Mapping[str, Mapping[str, int]], skills: Sequence[str]) -> dict[str, int]:
    """Local score of every participating model: its profile summed over ``skills``."""
    scores = {}
    for model, profile in profiles.items():
        present = [profile[s] for s in skills if s in profile]
        if present:
            scores[model] = sum(present)
    return scores


def recruitment_distribution(
    profiles: Mapping[str, Mapping[str, int]],
    skills: Sequence[str],
    global_dist: Mapping[str, float],
    pool: Sequence[str],
    resident: Collection[str] = (),
    cold_factor: float = 1.0,
) -> dict[str, float]:
    """Probability of recruiting each pool model for an instance with ``skills`` (0 for non-candidates).

    With ``cold_factor`` below 1, the weight of each candidate not in ``resident`` is multiplied by it
    before normalizing (swap-cost-aware recruitment); at 1.0 ``resident`` is not read.
    """
    local = local_scores(profiles, skills) if skills else {}
    if not local:
        weights = {m: 1.0 for m in pool}
    elif any(s > 0 for s in local.values()):
        weights = {m: s * global_dist.get(m, 0.0) for m, s in local.items() if s > 0}
    else:
        lowest = min(local.values())
        weights = {m: (s - lowest + 1) * global_dist.get(m, 0.0) for m, s in local.items()}
    if sum(weights.values()) <= 0:  # every candidate has zero global competence: uniform over them
        weights = {m: 1.0 for m in weights}
    if cold_factor != 1.0:
        weights = {m: w if m in resident else w * cold_factor for m, w in weights.items()}
    total = sum(weights.values())
    return {m: weights.get(m, 0.0) / total for m in pool}


def draw_experts(probabilities: Mapping[str, float], k: int, rng: random.Random) -> tuple[str, ...]:
    """k draws with replacement (a model may be recruited more than once)."""
    models = [m for m, p in probabilities.items() if p > 0]
    return tuple(rng.choices(models, weights=[probabilities[m] for m in models], k=k))


@dataclass(frozen=True)
class RecruitResult:
    """Recruitments of every test instance, and what the policy reports about them."""

    recruitments: list[Recruitment]
    info: dict


class RecruitPolicy(Protocol):
    """What every recruitment policy is (registered in :data:`skillmoe_ray.registry.RECRUIT_POLICIES`):
    the recruitments of all instances at once, from their skills, the experts' profiles and global
    competence distribution, the pool, the recruitment config and the run's seed; a policy registered
    with ``embeds`` also reads ``evidence`` (question embeddings and validation grading), the others
    ignore it; ``resident``: the models resident now, read only when ``rc.cold_factor`` is below 1 (the
    rival routers ignore it)."""

    def __call__(self, instance_skills: Mapping[str, Sequence[str]],
                 profiles: Mapping[str, Mapping[str, int]], global_dist: Mapping[str, float],
                 pool: Sequence[str], rc: RecruitConfig, seed: int,
                 evidence: QuestionEvidence | None = None,
                 resident: Collection[str] = ()) -> RecruitResult: ...


def summarize(recruitments: Sequence[Recruitment], policy: str, budget: int, **extra) -> dict:
    """Policy, budget, mean k and distinct experts of a recruitment, for results.json."""
    n = max(len(recruitments), 1)
    return {
        "policy": policy,
        "budget": budget,
        "mean_k": round(sum(len(r.experts) for r in recruitments) / n, 4),
        "distinct_experts": len({e for r in recruitments for e in r.experts}),
        **extra,
    }


def replace_rare_experts(recruitments: Sequence[Recruitment], min_share: float,
                         seed: int) -> tuple[list[Recruitment], list[str]]:
    """The paper's rare-expert rule: an expert holding fewer than ``min_share`` of all recruited slots is
    replaced in each of its slots by a draw from that instance's distribution over the other experts.

    Activating an expert for a handful of questions costs a whole model load; the paper trades those
    few answers for fewer loads. A slot whose instance has no other candidate keeps its expert.
    Returns the new recruitments and the experts replaced.
    """
    slots = Counter(e for r in recruitments for e in r.experts)
    total = sum(slots.values())
    rare = sorted(e for e, n in slots.items() if total and n / total < min_share)
    if not rare:
        return list(recruitments), []
    out = []
    for r in recruitments:
        others = {m: p for m, p in r.probabilities.items() if m not in rare and p > 0}
        rng = random.Random(derive_seed(seed, "rare", r.instance_id))
        experts = tuple(draw_experts(others, 1, rng)[0] if e in rare and others else e for e in r.experts)
        out.append(Recruitment(r.instance_id, r.skills, experts, r.probabilities))
    return out, rare


def recruit_with_policy(instance_skills: Mapping[str, Sequence[str]],
                        profiles: Mapping[str, Mapping[str, int]],
                        global_dist: Mapping[str, float], pool: Sequence[str], rc: RecruitConfig,
                        seed: int, evidence: QuestionEvidence | None = None,
                        resident: Collection[str] = ()) -> RecruitResult:
    """Recruitment with the policy ``rc.policy`` names (:data:`skillmoe_ray.registry.RECRUIT_POLICIES`):
    the one entry point of the batch pipeline and online serving."""
    from skillmoe_ray.registry import RECRUIT_POLICIES

    policy: RecruitPolicy = RECRUIT_POLICIES.load(rc.policy)
    return policy(instance_skills, profiles, global_dist, pool, rc, seed, evidence, resident=resident)


# The rival routers' settings enter the key of their own recruitment stages only
RIVAL_SETTINGS = ("avengers", "knn")


def recruit_settings(rc: RecruitConfig) -> dict:
    """The recruitment settings a recruitment stage is cached by: ``cold_factor`` only when it is on, so a
    run with it off keeps the cache keys (and cached recruitments) it had before the setting existed; the
    rival routers' settings never (their stages add them)."""
    settings = {key: value for key, value in asdict(rc).items() if key not in RIVAL_SETTINGS}
    if rc.cold_factor == 1.0:
        del settings["cold_factor"]
    return settings


def _cold_info(rc: RecruitConfig) -> dict:
    """The factor, for results.json, when swap-cost-aware recruitment is on (nothing when off)."""
    return {} if rc.cold_factor == 1.0 else {"cold_factor": rc.cold_factor}


def recruit_symbolic_moe(
    instance_skills: Mapping[str, Sequence[str]],
    profiles: Mapping[str, Mapping[str, int]],
    global_dist: Mapping[str, float],
    pool: Sequence[str],
    rc: RecruitConfig,
    seed: int,
    evidence: QuestionEvidence | None = None,
    resident: Collection[str] = (),
) -> RecruitResult:
    """Recruit k experts for every instance (in the order of ``instance_skills``).

    A :class:`RecruitPolicy`. With ``rc.cold_factor`` below 1, an instance's distribution favours the
    ``resident`` models and those recruited for the instances before it.
    """
    out = []
    planned = set(resident)
    for iid, skills in instance_skills.items():
        probs = recruitment_distribution(profiles, skills, global_dist, pool, planned, rc.cold_factor)
        rng = random.Random(derive_seed(seed, "recruit", iid))
        out.append(Recruitment(iid, tuple(skills), draw_experts(probs, rc.k, rng), probs))
        planned.update(out[-1].experts)
    extra = _cold_info(rc)
    if rc.rare_expert_share:
        out, rare = replace_rare_experts(out, rc.rare_expert_share, seed)
        extra["rare_experts_replaced"] = rare
    return RecruitResult(out, summarize(out, "symbolic_moe", rc.k * len(out), **extra))


def recruit_budgeted(
    instance_skills: Mapping[str, Sequence[str]],
    profiles: Mapping[str, Mapping[str, int]],
    global_dist: Mapping[str, float],
    pool: Sequence[str],
    rc: RecruitConfig,
    seed: int,
    evidence: QuestionEvidence | None = None,
    resident: Collection[str] = (),
) -> RecruitResult:
    """Choose all (instance, expert) pairs at once under the configured budget (a :class:`RecruitPolicy`).

    Suitability is the Symbolic-MoE recruitment distribution of each instance (with ``rc.cold_factor``
    below 1, weighted against the models not in ``resident``); each chosen expert answers once, and an
    instance's experts are listed by unified score, best first.
    """
    b = rc.budget
    ids = list(instance_skills)
    dists = [
        recruitment_distribution(profiles, instance_skills[i], global_dist, pool, resident, rc.cold_factor)
        for i in ids
    ]
    suitability = np.array([[d[m] for m in pool] for d in dists])
    scores = unified_scores(suitability, b.alpha, b.temperature)
    budget = int(round(b.per_instance * len(ids)))
    n_experts = len(pool)
    result = assign_budgeted(
        scores,
        budget,
        b.k_min,
        b.k_max or rc.k,
        capacity=np.full(n_experts, b.capacity) if b.capacity is not None else None,
        max_experts=b.max_experts,
        activation_cost=np.full(n_experts, b.activation_cost) if b.activation_cost else None,
    )
    out = []
    for row, (iid, dist) in enumerate(zip(ids, dists)):
        chosen = sorted(np.flatnonzero(result.matrix[row]), key=lambda j: -scores[row, j])
        out.append(Recruitment(iid, tuple(instance_skills[iid]), tuple(pool[j] for j in chosen), dist))
    info = summarize(
        out,
        "budgeted",
        budget,
        objective=round(float(result.objective), 6),
        method=result.method,
        exact=result.exact,
        **_cold_info(rc),
    )
    return RecruitResult(out, info)
