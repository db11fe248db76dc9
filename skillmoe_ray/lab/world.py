"""The skill lab's world: skills, tasks, and a seeded generator of questions with exact answers.

Each skill is a question template whose gold answer is computed, never written by hand. Skills are
grouped into tasks so that every task mixes several skills (and, across tasks, both answer types):
routing per instance can then beat routing per task, the paper's central claim. The skills are ones
a ~95k-parameter model learns in about 1,000 steps (measured; see the README's skill-lab section).

Validation and test questions are disjoint by construction: a question belongs to the split its
stable hash selects, so each split can be generated on its own, for any seed and size.

This is the standard world (``skill_lab``); :data:`WORLDS` names the others (the hard one of ``lab_hard``,
:mod:`skillmoe_ray.lab.hard_world`), which the same generator draws from when ``world`` says so.
"""

from __future__ import annotations

import random
from dataclasses import replace

from skillmoe_ray.config import SplitSpec
from skillmoe_ray.data.instances import CHOICE, MATH, Instance
from skillmoe_ray.errors import ConfigError
from skillmoe_ray.lab.hard_world import HARD_SKILLS, LOOKALIKES
from skillmoe_ray.lab.primitives import COUNTRIES, COUNTRY_CODES, Question, Skill
from skillmoe_ray.lab.primitives import choice_question as _choice
from skillmoe_ray.seeding import derive_seed, stable_hash

SPLITS = ("val", "test")
# Each split's questions are those whose stable hash falls in its residue: disjoint splits, no coordination.
_SPLIT_RESIDUE = {"val": 0, "test": 1}
# Tries per wanted question before a skill's question space is declared exhausted.
_TRIES_PER_QUESTION = 400


def last_digit(rng: random.Random) -> Question:
    n = rng.randint(10, 9999)
    return Question(f"What is the last digit of the number {n}?", str(n % 10))


def digit_addition(rng: random.Random) -> Question:
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    return Question(f"What is {a} plus {b}?", str(a + b))


def successor(rng: random.Random) -> Question:
    n = rng.randint(1, 98)
    return Question(f"What number comes right after {n}?", str(n + 1))


def country_code(rng: random.Random) -> Question:
    country = rng.choice(COUNTRIES)
    template = rng.choice(
        (
            "What is the calling code of {}?",
            "Which calling code does {} use?",
            "What calling code belongs to {}?",
        )
    )
    return Question(template.format(country), str(COUNTRY_CODES[country]))


def metres_to_cm(rng: random.Random) -> Question:
    m = rng.randint(1, 99)
    return Question(f"How many centimetres are there in {m} metres?", str(100 * m))


def _extreme(rng: random.Random, largest: bool) -> Question:
    numbers = rng.sample(range(10, 100), 4)
    target = max(numbers) if largest else min(numbers)
    word = "largest" if largest else "smallest"
    return _choice(f"Which option is the {word} number?", [str(n) for n in numbers], numbers.index(target))


def largest_number(rng: random.Random) -> Question:
    return _extreme(rng, True)


def smallest_number(rng: random.Random) -> Question:
    return _extreme(rng, False)


def letter_option(rng: random.Random) -> Question:
    options = [str(d) for d in rng.sample(range(10), 3)]
    answer = rng.randrange(4)
    options.insert(answer, rng.choice("abcdefghijklmnopqrstuvwxyz"))
    return _choice("Which option is a letter?", options, answer)


SKILLS: dict[str, Skill] = {
    s.name: s
    for s in (
        Skill("digit addition", "arithmetic", MATH, digit_addition),
        Skill("successor", "arithmetic", MATH, successor),
        Skill("metres to cm", "arithmetic", MATH, metres_to_cm),
        Skill("largest number", "comparison", CHOICE, largest_number),
        Skill("smallest number", "comparison", CHOICE, smallest_number),
        Skill("last digit", "comparison", MATH, last_digit),
        Skill("country code", "lookup", MATH, country_code),
        Skill("letter option", "lookup", CHOICE, letter_option),
    )
}
TASKS = tuple(dict.fromkeys(s.task for s in SKILLS.values()))
# The lab's worlds (``lab.world``; the data source's ``config``): "standard" is the world above (SKILLS),
# "hard" the one of :mod:`skillmoe_ray.lab.hard_world`, where routing is hard.
WORLDS = ("standard", "hard")


def world_skills(world: str = "standard", where: str = "lab.world") -> dict[str, Skill]:
    """The skills of ``world``; an unknown world is an error naming ``where``."""
    if world == "standard":
        return SKILLS
    if world == "hard":
        return HARD_SKILLS
    raise ConfigError(f"{where}: unknown lab world {world!r}; worlds: {', '.join(WORLDS)}")


def world_lookalikes(world: str = "standard") -> dict[str, tuple[str, ...]]:
    """Skill -> the skills whose questions look alike (one cue word apart); none in the standard world."""
    return {} if world_skills(world) is SKILLS else LOOKALIKES


def world_tasks(world: str = "standard") -> tuple[str, ...]:
    """The tasks of ``world``, in the order of its skills."""
    return tuple(dict.fromkeys(s.task for s in world_skills(world).values()))


def check_skills(names, where: str, world: str = "standard") -> None:
    """Fail naming the key when a skill name is not one of the world's."""
    skills = world_skills(world)
    unknown = [n for n in names if n not in skills]
    if unknown:
        raise ConfigError(f"{where}: unknown skill {unknown[0]!r}; skills: {', '.join(skills)}")


def make_instance(skill: Skill, question: Question, iid: str) -> Instance:
    """The Instance of a generated question; ``subject`` records its gold skill."""
    return Instance(
        iid, skill.task, question.text, question.gold, skill.answer_type, question.choices, skill.name
    )


def in_split(question: Question, split: str) -> bool:
    """Whether a question belongs to ``split`` (its stable hash's residue), so splits never share one."""
    return int(stable_hash([question.text, question.choices]), 16) % 2 == _SPLIT_RESIDUE[split]


def draw_questions(skill: Skill, n: int, rng: random.Random, split: str) -> list[Question]:
    """``n`` distinct questions of one skill that belong to ``split``; fails if the space runs out."""
    found: dict[tuple, Question] = {}
    for _ in range(n * _TRIES_PER_QUESTION):
        if len(found) == n:
            break
        q = skill.make(rng)
        if in_split(q, split):
            found.setdefault((q.text, q.choices), q)
    if len(found) < n:
        raise ConfigError(
            f"skill lab: skill {skill.name!r} has only about {len(found)} distinct questions per "
            f"split, {n} asked for; lower data.{split}.size"
        )
    return list(found.values())


def generate_split(split: str, size: int, seed: int, world: str = "standard") -> list[Instance]:
    """``size`` questions of ``split`` ("val" or "test") of ``world``, skills in turn (balanced), in a seeded
    order."""
    if split not in SPLITS:
        raise ConfigError(f"skill lab: unknown split {split!r}; splits: {', '.join(SPLITS)}")
    if size < 1:
        raise ConfigError(f"data.{split}.size must be >= 1 for the skill lab, got {size}")
    skills = world_skills(world, f"data.{split}.config")
    names = list(skills)
    counts = {name: size // len(names) + (i < size % len(names)) for i, name in enumerate(names)}
    out = []
    for name, n in counts.items():
        rng = random.Random(derive_seed(seed, "lab", split, name))
        out += [make_instance(skills[name], q, "") for q in draw_questions(skills[name], n, rng, split)]
    random.Random(derive_seed(seed, "lab-order", split)).shuffle(out)
    return [replace(inst, id=f"lab-{split}-{i:04d}") for i, inst in enumerate(out)]


def lab_source(spec: SplitSpec, task: str, where: str, seed: int) -> list[Instance]:
    """The data source ``lab``: ``spec.size`` (default 120) questions of the split ``where`` names, drawn
    from ``seed``, of the world ``spec.config`` names (default: the standard one). The questions carry
    their own tasks (``task`` is not used)."""
    size = 120 if spec.size is None else spec.size
    return generate_split(where.rsplit(".", 1)[-1], size, seed, spec.config or "standard")
