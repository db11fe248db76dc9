"""What every skill-lab world is built from: questions, skills, and the invented countries' table.

Shared by the standard world (:mod:`skillmoe_ray.lab.world`) and the hard one
(:mod:`skillmoe_ray.lab.hard_world`), so that neither imports the other's internals.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from skillmoe_ray.data.instances import LETTERS

# The memorized table: invented countries and their two-digit calling codes (fixed, not seeded:
# it is the world's knowledge, the same in every run).
COUNTRIES = (
    "Avaria",
    "Belmora",
    "Corvath",
    "Dastria",
    "Elunor",
    "Farnesh",
    "Galvia",
    "Harrow",
    "Istrel",
    "Jorvik",
    "Kelmar",
    "Lorvant",
    "Marvosa",
    "Nerith",
    "Ostrava",
    "Pellin",
    "Quorra",
    "Rastan",
    "Selvia",
    "Tavrin",
    "Ulmora",
    "Varnesh",
    "Westmar",
    "Xandria",
    "Yelvar",
    "Zorath",
    "Brenvia",
    "Cravonia",
    "Delmark",
    "Estovia",
)
_codes = random.Random(12).sample(range(10, 100), len(COUNTRIES))
COUNTRY_CODES = dict(zip(COUNTRIES, _codes))


@dataclass(frozen=True)
class Question:
    """One generated question before it becomes an Instance: text, options, gold answer."""

    text: str
    gold: str
    choices: tuple[str, ...] | None = None


def choice_question(text: str, options: list[str], answer: int) -> Question:
    """A multiple-choice question whose gold is the letter of the option at ``answer``."""
    return Question(text, LETTERS[answer], tuple(options))


@dataclass(frozen=True)
class Skill:
    """A skill: its name (the keyword the keyword model learns), its task, answer type and template."""

    name: str
    task: str
    answer_type: str
    make: Callable[[random.Random], Question]
