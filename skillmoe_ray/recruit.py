"""Recruitment: which k experts answer each test instance.

DESIGN section 3, step 5 (Symbolic-MoE). The local score of a model for an instance is the sum of
its profile over the instance's skills; models with no profile entry for any of them do not take
part. If some local score is positive, the candidates are the positive models weighted by
local x global competence; otherwise every participant, weighted by (local - min + 1) x global.
k experts are drawn with replacement from that distribution, seeded per instance. An instance
without skills (or without participants) gets k uniform draws over the pool.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from skillmoe_ray.assignment import Assignment, assign_budgeted, unified_scores  # noqa: F401 (re-exported)
from skillmoe_ray.seeding import derive_seed


@dataclass(frozen=True)
class Recruitment:
    """The experts recruited for one instance and the distribution they were drawn from."""

    instance_id: str
    skills: tuple[str, ...]
    experts: tuple[str, ...]
    probabilities: dict[str, float]

    def to_dict(self) -> dict:
        """Plain-JSON form, for recruitment.jsonl."""
        return {**asdict(self), "skills": list(self.skills), "experts": list(self.experts)}


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
) -> dict[str, float]:
    """Probability of recruiting each pool model for an instance with ``skills`` (0 for non-candidates)."""
    local = local_scores(profiles, skills) if skills else {}
    if not local:
        return {m: 1.0 / len(pool) for m in pool}
    positive = {m: s for m, s in local.items() if s > 0}
    if positive:
        weights = {m: s * global_dist.get(m, 0.0) for m, s in positive.items()}
    else:
        lowest = min(local.values())
        weights = {m: (s - lowest + 1) * global_dist.get(m, 0.0) for m, s in local.items()}
    total = sum(weights.values())
    if total <= 0:  # every candidate has zero global competence: fall back to uniform over them
        weights = {m: 1.0 for m in weights}
        total = float(len(weights))
    return {m: weights.get(m, 0.0) / total for m in pool}


def draw_experts(probabilities: Mapping[str, float], k: int, rng: random.Random) -> tuple[str, ...]:
    """k draws with replacement (a model may be recruited more than once)."""
    models = [m for m, p in probabilities.items() if p > 0]
    return tuple(rng.choices(models, weights=[probabilities[m] for m in models], k=k))


def recruit_symbolic_moe(
    instance_skills: Mapping[str, Sequence[str]],
    profiles: Mapping[str, Mapping[str, int]],
    global_dist: Mapping[str, float],
    pool: Sequence[str],
    k: int,
    seed: int,
) -> list[Recruitment]:
    """Recruit k experts for every instance (in the order of ``instance_skills``)."""
    out = []
    for iid, skills in instance_skills.items():
        probs = recruitment_distribution(profiles, skills, global_dist, pool)
        rng = random.Random(derive_seed(seed, "recruit", iid))
        out.append(Recruitment(iid, tuple(skills), draw_experts(probs, k, rng), probs))
    return out


POLICIES = {"symbolic_moe": recruit_symbolic_moe}
