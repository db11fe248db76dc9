"""Per-model skill profiles, global competence, and the aggregator-selection task.

DESIGN section 3, steps 3-4. A model's profile holds, per skill, +1 for every validation question
with that skill it answered correctly and -1 for every one it got wrong. Its global competence is
the sum of its profile; competences become a distribution by shifting (when the smallest is
negative), raising to the power 1/T and normalizing.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

Profile = dict[str, int]


def build_profiles(
    skills_by_instance: Mapping[str, Sequence[str]],
    correct: Mapping[str, Mapping[str, bool]],
) -> dict[str, Profile]:
    """profile[model][skill] = (#correct - #incorrect) over validation questions with that skill.

    ``correct[model][instance_id]`` says whether the model answered the instance correctly.
    Instances without skills contribute nothing.
    """
    profiles: dict[str, Profile] = {}
    for model, graded in correct.items():
        profile: Profile = {}
        for iid, ok in graded.items():
            for skill in skills_by_instance.get(iid, ()):
                profile[skill] = profile.get(skill, 0) + (1 if ok else -1)
        profiles[model] = dict(sorted(profile.items()))
    return profiles


def global_competence(profiles: Mapping[str, Profile]) -> dict[str, int]:
    """A model's global competence: the sum of its profile."""
    return {model: sum(profile.values()) for model, profile in profiles.items()}


def competence_distribution(competence: Mapping[str, float], temperature: float = 0.5) -> dict[str, float]:
    """Competences as probabilities.

    If the smallest competence is negative, every competence is shifted by (1 - smallest) so all
    are positive; each is raised to the power 1/temperature and the results normalized. All-zero
    competences give the uniform distribution.
    """
    if not competence:
        return {}
    values = dict(competence)
    lowest = min(values.values())
    if lowest < 0:
        values = {m: c + (1 - lowest) for m, c in values.items()}
    powered = {m: float(c) ** (1.0 / temperature) for m, c in values.items()}
    total = sum(powered.values())
    if total <= 0:
        return {m: 1.0 / len(powered) for m in powered}
    return {m: p / total for m, p in powered.items()}


def synthetic_aggregation_task(
    responses: Mapping[str, str],
    correct: Mapping[str, bool],
    rng: random.Random,
) -> list[str]:
    """Three shuffled responses for one validation question: one correct, two incorrect.

    ``responses`` and ``correct`` are keyed by model. Missing kinds are filled with empty strings
    (no model answered correctly, or fewer than two answered incorrectly).
    """
    right = sorted(m for m in responses if correct.get(m))
    wrong = sorted(m for m in responses if not correct.get(m))
    chosen = [responses[rng.choice(right)]] if right else [""]
    picked_wrong = rng.sample(wrong, min(2, len(wrong)))
    chosen += [responses[m] for m in picked_wrong] + [""] * (2 - len(picked_wrong))
    rng.shuffle(chosen)
    return chosen


def select_aggregator(accuracy: Mapping[str, float], candidates: Sequence[str]) -> str:
    """The most accurate candidate on the synthetic task; ties go to the earlier candidate."""
    return max(candidates, key=lambda m: (accuracy.get(m, 0.0), -candidates.index(m)))
