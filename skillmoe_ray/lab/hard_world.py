"""The skill lab's hard world (``lab.world: hard``, ``+experiment=lab_hard``): a lab where routing is hard.

Twelve skills in four tasks (the paper's table has four benchmarks), chosen for three properties that
the standard world lacks:

- **look-alike questions**: within a task, skills share one template and differ by one cue word (two at
  most: "What is 47 plus 25?" / "What is 47 minus 25?"; "comes right after" / "right before" / "two after";
  "calling code" / "postal code" of the same invented countries). An embedding of the question alone
  places them side by side while the skill, and the expert that has it, differ (:data:`LOOKALIKES`);
- **partly reliable specialists**: sums and differences with carries and borrows, the second largest of
  four numbers, counting on by two, are genuinely hard for a ~95k-parameter model trained on four skills
  for 1,000 steps (the recipes' ``steps``), so their best specialists are right on only part of the
  questions (a pilot with two-digit plus two-digit sums answered none right after 1,000 steps of 64:
  too hard to be worth routing, hence a two-digit number plus a digit);
- **a confusable keyword model**: its recipe's ``label_noise`` trains it on examples whose skill is, at
  that rate, a look-alike of the gold one (:func:`skillmoe_ray.lab.examples.keyword_examples`), and
  briefly, so a sampled annotation often names the wrong one of a look-alike group (measured in the
  README's lab_hard section: ``python -m skillmoe_ray.lab --samples 5 +experiment=lab_hard``).

Gold answers are computed, never written by hand; splits are disjoint as in the standard world.
"""

from __future__ import annotations

import random

from skillmoe_ray.data.instances import CHOICE, MATH
from skillmoe_ray.lab.primitives import COUNTRIES, COUNTRY_CODES, Question, Skill, choice_question

# A second memorized table over the same invented countries: two-digit postal prefixes (fixed, not seeded).
_postal = random.Random(34).sample(range(10, 100), len(COUNTRIES))
POSTAL_CODES = dict(zip(COUNTRIES, _postal))


def carry_sum(rng: random.Random) -> Question:
    """A two-digit number plus a digit: about half carry into the tens (or hundreds)."""
    a, b = rng.randint(10, 99), rng.randint(1, 9)
    return Question(f"What is {a} plus {b}?", str(a + b))


def borrow_difference(rng: random.Random) -> Question:
    """A two-digit number minus a digit: about half borrow from the tens."""
    a, b = rng.randint(10, 99), rng.randint(1, 9)
    return Question(f"What is {a} minus {b}?", str(a - b))


def times_ten(rng: random.Random) -> Question:
    n = rng.randint(2, 99)
    return Question(f"What is {n} times ten?", str(10 * n))


def successor(rng: random.Random) -> Question:
    n = rng.randint(1, 98)
    return Question(f"What number comes right after {n}?", str(n + 1))


def predecessor(rng: random.Random) -> Question:
    n = rng.randint(2, 99)
    return Question(f"What number comes right before {n}?", str(n - 1))


def skip_two(rng: random.Random) -> Question:
    n = rng.randint(1, 97)
    return Question(f"What number comes two after {n}?", str(n + 2))


def _ranked(rng: random.Random, word: str, rank: int) -> Question:
    """Four distinct two-digit options; the answer is the one at ``rank`` in descending order (-1: least)."""
    numbers = rng.sample(range(10, 100), 4)
    target = sorted(numbers, reverse=True)[rank]
    return choice_question(f"Which option is the {word} number?", [str(n) for n in numbers],
                           numbers.index(target))


def largest_number(rng: random.Random) -> Question:
    return _ranked(rng, "largest", 0)


def smallest_number(rng: random.Random) -> Question:
    return _ranked(rng, "smallest", -1)


def second_largest(rng: random.Random) -> Question:
    return _ranked(rng, "second largest", 1)


def _code_question(rng: random.Random, kind: str, table: dict[str, int]) -> Question:
    country = rng.choice(COUNTRIES)
    template = rng.choice(("What is the {} code of {}?", "Which {} code does {} use?"))
    return Question(template.format(kind, country), str(table[country]))


def calling_code(rng: random.Random) -> Question:
    return _code_question(rng, "calling", COUNTRY_CODES)


def postal_code(rng: random.Random) -> Question:
    return _code_question(rng, "postal", POSTAL_CODES)


def letter_option(rng: random.Random) -> Question:
    options = [str(d) for d in rng.sample(range(10), 3)]
    answer = rng.randrange(4)
    options.insert(answer, rng.choice("abcdefghijklmnopqrstuvwxyz"))
    return choice_question("Which option is a letter?", options, answer)


HARD_SKILLS: dict[str, Skill] = {
    s.name: s
    for s in (
        Skill("sum", "arithmetic", MATH, carry_sum),
        Skill("difference", "arithmetic", MATH, borrow_difference),
        Skill("times ten", "arithmetic", MATH, times_ten),
        Skill("successor", "sequence", MATH, successor),
        Skill("predecessor", "sequence", MATH, predecessor),
        Skill("skip two", "sequence", MATH, skip_two),
        Skill("largest number", "comparison", CHOICE, largest_number),
        Skill("smallest number", "comparison", CHOICE, smallest_number),
        Skill("second largest", "comparison", CHOICE, second_largest),
        Skill("calling code", "lookup", MATH, calling_code),
        Skill("postal code", "lookup", MATH, postal_code),
        Skill("letter option", "lookup", CHOICE, letter_option),
    )
}
# Skills whose questions share a template and differ by one cue word: each group's members look alike.
LOOKALIKE_GROUPS = (
    ("sum", "difference"),
    ("successor", "predecessor", "skip two"),
    ("largest number", "smallest number", "second largest"),
    ("calling code", "postal code"),
)
LOOKALIKES: dict[str, tuple[str, ...]] = {
    name: tuple(other for other in group if other != name) for group in LOOKALIKE_GROUPS for name in group
}
