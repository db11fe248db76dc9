"""Training examples of the skill lab's models, written with the pipeline's own prompts.

An expert learns to answer its skills' questions from the exact chat prompt the expert stage sends
(:func:`skillmoe_ray.method.aggregate.expert_messages`); the keyword model learns to name a question's skill
in
the line the skill stage parses (:func:`skillmoe_ray.method.skills.keyword_messages`); the aggregator learns
to state the answer most candidate solutions agree on, from the aggregation prompt itself
(:func:`skillmoe_ray.method.aggregate.aggregator_messages`). Only the response is trained on.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from skillmoe_ray.data.instances import CHOICE, Instance
from skillmoe_ray.lab.world import make_instance, world_lookalikes, world_skills
from skillmoe_ray.method.aggregate import aggregator_messages, expert_messages
from skillmoe_ray.method.skills import KEYWORD_LINE, keyword_messages

Example = tuple[list[dict], str]  # (chat messages, the response to learn)
# Shares of the aggregator's training sets by how many of the three candidates are right, and how
# many are empty; the rest are (right, wrong, wrong) with distinct wrong answers.
_AGGREGATOR_MIX = ((3, 0.25), (2, 0.35), (1, 0.15))
_EMPTY_SHARE = 0.15


def answer_text(answer: str, answer_type: str) -> str:
    """A final answer stated the way the prompts ask for it."""
    return f"The answer is ({answer})." if answer_type == CHOICE else f"The answer is \\boxed{{{answer}}}."


def random_instance(skills: Sequence[str], rng: random.Random, world: str = "standard") -> Instance:
    """A question of one of ``skills`` of ``world``, drawn with replacement (training needs no distinct
    questions)."""
    skill = world_skills(world)[rng.choice(list(skills))]
    return make_instance(skill, skill.make(rng), "train")


def expert_examples(skills: Sequence[str], n: int, rng: random.Random,
                    world: str = "standard") -> list[Example]:
    """Questions of the expert's own skills only: off-skill exposure stays at zero."""
    out = []
    for _ in range(n):
        inst = random_instance(skills, rng, world)
        out.append((expert_messages(inst), answer_text(inst.gold, inst.answer_type)))
    return out


def keyword_examples(n: int, rng: random.Random, world: str = "standard", label_noise: float = 0.0
                     ) -> list[Example]:
    """Any question of ``world``, answered with its skill's name in the skill stage's format.

    With ``label_noise`` > 0, that share of the questions that have look-alikes (the hard world's) is
    answered with a look-alike's name instead: the keyword model then learns to confuse them about as often.
    """
    out, alikes = [], world_lookalikes(world)
    for _ in range(n):
        inst = random_instance(list(world_skills(world)), rng, world)
        label = inst.subject
        if label_noise > 0 and alikes.get(label) and rng.random() < label_noise:
            label = rng.choice(alikes[label])
        out.append((keyword_messages(inst), f"{KEYWORD_LINE} {label}"))
    return out


def wrong_answer(inst: Instance, rng: random.Random, avoid: set[str]) -> str:
    """A plausible wrong answer: another option letter, or a nearby or same-length number."""
    while True:
        if inst.answer_type == CHOICE:
            guess = rng.choice(inst.valid_letters())
        else:
            gold = int(inst.gold)
            guess = str(rng.choice([gold + rng.randint(-9, 9), rng.randint(0, 10 ** len(inst.gold) - 1)]))
        if guess not in avoid and not guess.startswith("-"):
            return guess


def candidate_answers(inst: Instance, rng: random.Random) -> list[str]:
    """Three candidate answers with a drawn number of right ones (and sometimes an empty one)."""
    roll, n_right = rng.random(), 0
    for right, share in _AGGREGATOR_MIX:
        if roll < share:
            n_right = right
            break
        roll -= share
    answers = [inst.gold] * n_right
    wrong_pool: set[str] = {inst.gold}
    while len(answers) < 3:
        same = answers and answers[-1] != inst.gold and rng.random() < 0.3  # a wrong majority, sometimes
        answers.append(answers[-1] if same else wrong_answer(inst, rng, wrong_pool))
        wrong_pool.add(answers[-1])
    rng.shuffle(answers)
    if rng.random() < _EMPTY_SHARE:
        answers[rng.randrange(3)] = ""
    return answers


def majority_answer(answers: Sequence[str]) -> str | None:
    """The answer most candidates give (the first such one on a tie); None when all are empty."""
    stated = [a for a in answers if a]
    if not stated:
        return None
    counts = Counter(stated)
    return max(stated, key=lambda a: (counts[a], -stated.index(a)))


def aggregation_case(inst: Instance, rng: random.Random) -> tuple[list[dict], str] | None:
    """The aggregation prompt over three drawn candidate solutions to ``inst``, and their majority answer
    (None when every candidate is empty)."""
    answers = candidate_answers(inst, rng)
    target = majority_answer(answers)
    if target is None:
        return None
    texts = [answer_text(a, inst.answer_type) if a else "" for a in answers]
    return aggregator_messages(inst, texts), target


def aggregator_examples(n: int, rng: random.Random, world: str = "standard",
                        choice_share: float | None = None) -> list[Example]:
    """Aggregation prompts over three candidate solutions; the response states their majority answer.

    Questions are of any skill of ``world``, drawn alike; with ``choice_share`` (the recipe key), that share
    of them is of a multiple-choice skill, the rest of the others (the hard lab's aggregator states the
    majority letter far less often than the majority number; see the README's hard-lab section).
    """
    out, skills = [], world_skills(world)
    choice = [name for name, skill in skills.items() if skill.answer_type == CHOICE]
    other = [name for name in skills if name not in choice]
    while len(out) < n:
        pool = list(skills) if choice_share is None else choice if rng.random() < choice_share else other
        inst = random_instance(pool, rng, world)
        case = aggregation_case(inst, rng)
        if case is not None:
            out.append((case[0], answer_text(case[1], inst.answer_type)))
    return out
