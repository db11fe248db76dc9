"""The skill lab's hard world (lab_hard): exact answers, disjoint splits, look-alike questions, its recipes;
and the standard world left exactly as it was."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from skillmoe_ray.config import SplitSpec
from skillmoe_ray.data.instances import CHOICE
from skillmoe_ray.errors import ConfigError
from skillmoe_ray.lab import examples as ex
from skillmoe_ray.lab.build import SHAPE, full_recipe, recipe_hash
from skillmoe_ray.lab.hard_world import HARD_SKILLS, LOOKALIKE_GROUPS, LOOKALIKES, POSTAL_CODES
from skillmoe_ray.lab.world import COUNTRIES, COUNTRY_CODES, generate_split, lab_source, world_tasks
from skillmoe_ray.method.aggregate import extract_answer, is_correct
from skillmoe_ray.method.skills import KEYWORD_LINE
from skillmoe_ray.seeding import stable_hash
from tests.conftest import compose_tree


def solve(inst) -> str:
    """The gold answer recomputed from the question text alone (independent of the generator)."""
    q, numbers = inst.question, [int(n) for n in re.findall(r"\d+", inst.question)]
    arithmetic = {
        "sum": lambda: numbers[0] + numbers[1],
        "difference": lambda: numbers[0] - numbers[1],
        "times ten": lambda: numbers[0] * 10,
        "successor": lambda: numbers[0] + 1,
        "predecessor": lambda: numbers[0] - 1,
        "skip two": lambda: numbers[0] + 2,
    }
    if inst.subject in arithmetic:
        return str(arithmetic[inst.subject]())
    if inst.subject in ("calling code", "postal code"):
        table = COUNTRY_CODES if inst.subject == "calling code" else POSTAL_CODES
        return str(next(code for name, code in table.items() if re.search(rf"\b{name}\b", q)))
    values = list(inst.choices)
    if inst.subject == "letter option":
        return "ABCD"[next(i for i, v in enumerate(values) if v.isalpha())]
    ranked = sorted((int(v) for v in values), reverse=True)
    pick = {"largest number": ranked[0], "second largest": ranked[1], "smallest number": ranked[-1]}
    return "ABCD"[values.index(str(pick[inst.subject]))]


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_every_hard_question_has_its_exact_gold_answer_skill_and_task(seed):
    questions = generate_split("val", 192, seed, "hard") + generate_split("test", 192, seed, "hard")
    for inst in questions:
        assert inst.gold == solve(inst), inst
        assert HARD_SKILLS[inst.subject].task == inst.task
        assert inst.answer_type == HARD_SKILLS[inst.subject].answer_type
        if inst.answer_type == CHOICE:
            assert len(inst.choices) == 4 and len(set(inst.choices)) == 4
        assert is_correct(extract_answer(ex.answer_text(inst.gold, inst.answer_type), inst), inst)
    assert {inst.subject for inst in questions} == set(HARD_SKILLS)


def test_the_calling_and_postal_tables_differ_for_every_country():
    assert set(POSTAL_CODES) == set(COUNTRIES)
    # A model that answers a postal question with the calling code is wrong for all but one country
    assert sum(POSTAL_CODES[c] == COUNTRY_CODES[c] for c in COUNTRIES) <= 1


def test_four_tasks_of_three_skills_with_short_names():
    assert world_tasks("hard") == ("arithmetic", "sequence", "comparison", "lookup")
    assert set(Counter(s.task for s in HARD_SKILLS.values()).values()) == {3}
    assert all(len(name) <= 20 for name in HARD_SKILLS)  # the skill stage drops longer keywords


@pytest.mark.parametrize("seed", [0, 3])
def test_hard_splits_are_disjoint_balanced_sized_and_seeded(seed):
    val, test = generate_split("val", 192, seed, "hard"), generate_split("test", 180, seed, "hard")
    key = lambda i: (i.question, i.choices)  # noqa: E731
    assert len(val) == 192 and len(test) == 180
    assert not {key(i) for i in val} & {key(i) for i in test}
    assert len({key(i) for i in val}) == 192
    assert set(Counter(i.subject for i in test).values()) == {15}
    assert generate_split("val", 192, seed, "hard") == val
    assert [key(i) for i in generate_split("val", 192, seed + 1, "hard")] != [key(i) for i in val]


def template(question: str) -> list[str]:
    """A question's words with its numbers and country names masked: what is left is its surface form."""
    masked = re.sub(r"\d+", "N", question)
    for country in COUNTRIES:
        masked = re.sub(rf"\b{country}\b", "C", masked)
    return masked.split()


def word_edits(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """Levenshtein distance over words."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def test_look_alike_skills_differ_by_one_cue_word_and_no_two_skills_share_a_template():
    questions = generate_split("val", 192, 0, "hard")
    templates: dict[str, set[tuple[str, ...]]] = {}
    for inst in questions:
        templates.setdefault(inst.subject, set()).add(tuple(template(inst.question)))
    def words_apart(a: str, b: str) -> int:
        """The fewest words changed, inserted or deleted to turn some template of a into one of b."""
        return min(word_edits(ta, tb) for ta in templates[a] for tb in templates[b])

    for group in LOOKALIKE_GROUPS:
        assert len({HARD_SKILLS[name].task for name in group}) == 1
        for a in group:
            assert min(words_apart(a, b) for b in LOOKALIKES[a]) == 1  # one cue word from a look-alike
            assert max(words_apart(a, b) for b in LOOKALIKES[a]) <= 2  # at most two from any
    assert word_edits(("a", "b", "c"), ("a", "x", "b", "c")) == 1 and word_edits(("a",), ("b", "c")) == 2
    owners = Counter(t for ts in templates.values() for t in ts)
    assert max(owners.values()) == 1  # the cue word alone names the skill: the text determines it


def test_the_lab_hard_pool_keeps_look_alikes_apart_and_gives_every_skill_a_specialist():
    lab = compose_tree(["+experiment=lab_hard"])["lab"]
    assert lab["world"] == "hard"
    experts = {n: r["skills"] for n, r in lab["models"].items() if r.get("role", "expert") == "expert"}
    specialists = Counter(s for skills in experts.values() for s in skills)
    assert set(specialists) == set(HARD_SKILLS) and max(specialists.values()) == 2
    assert sorted(specialists.values()).count(2) == 4  # one skill of each task has two specialists
    for skills in experts.values():
        assert not any(set(LOOKALIKES.get(s, ())) & set(skills) for s in skills)
        assert len({HARD_SKILLS[s].task for s in skills}) == len(skills) == 4
    for name, recipe in lab["models"].items():
        full_recipe(name, dict(recipe), "hard")  # every recipe is valid in the hard world


def test_keyword_label_noise_names_a_look_alike_at_its_rate_and_only_when_asked():
    clean = ex.keyword_examples(2000, random.Random(0), "hard")
    noisy = ex.keyword_examples(2000, random.Random(0), "hard", 0.35)
    solved = [solve_skill(m[-1]["content"]) for m, _ in noisy]
    named = [r.removeprefix(f"{KEYWORD_LINE} ") for _, r in noisy]
    assert all(r.removeprefix(f"{KEYWORD_LINE} ") == solve_skill(m[-1]["content"]) for m, r in clean)
    with_alikes = [(gold, said) for gold, said in zip(solved, named) if LOOKALIKES.get(gold)]
    mislabelled = [(gold, said) for gold, said in with_alikes if gold != said]
    assert 0.30 < len(mislabelled) / len(with_alikes) < 0.40
    assert all(said in LOOKALIKES[gold] for gold, said in mislabelled)
    assert all(gold == said for gold, said in zip(solved, named) if not LOOKALIKES.get(gold))


def test_aggregator_choice_share_draws_multiple_choice_questions_at_its_rate_and_only_when_asked():
    def choice_rate(examples) -> float:
        return sum("Options:" in m[-1]["content"] for m, _ in examples) / len(examples)

    plain = ex.aggregator_examples(1200, random.Random(0), "hard")
    assert plain == ex.aggregator_examples(1200, random.Random(0), "hard", None)  # unset: as before
    assert 0.28 < choice_rate(plain) < 0.39  # four of the twelve skills, drawn alike
    shared = ex.aggregator_examples(1200, random.Random(0), "hard", 0.6)
    assert 0.55 < choice_rate(shared) < 0.65
    assert {solve_skill(m[-1]["content"]) for m, _ in shared} == set(HARD_SKILLS)
    assert choice_rate(ex.aggregator_examples(200, random.Random(0), "hard", 0.0)) == 0


def solve_skill(prompt: str) -> str:
    """The skill of a keyword prompt's question, read from its cue words."""
    cues = [("plus", "sum"), ("minus", "difference"), ("times ten", "times ten"),
            ("right after", "successor"), ("right before", "predecessor"), ("two after", "skip two"),
            ("second largest", "second largest"), ("largest", "largest number"),
            ("smallest", "smallest number"), ("calling", "calling code"), ("postal", "postal code"),
            ("a letter", "letter option")]
    question = prompt.split("\n")[1]
    return next(skill for cue, skill in cues if cue in question)


def test_hard_recipes_record_their_world_noise_choice_share_and_shape_and_are_checked():
    standard = full_recipe("x", {"skills": ["successor"]})
    hard = full_recipe("x", {"skills": ["successor"]}, "hard")
    assert "world" not in standard and hard["world"] == "hard" and recipe_hash(hard) != recipe_hash(standard)
    keyword = full_recipe("k", {"role": "keyword", "label_noise": 0.35}, "hard")
    assert keyword["label_noise"] == 0.35 and keyword["skills"] == list(HARD_SKILLS)
    assert "label_noise" not in full_recipe("k", {"role": "keyword", "label_noise": 0}, "hard")
    with pytest.raises(ConfigError, match="lab.models.x.skills: unknown skill 'sum'; skills: digit addition"):
        full_recipe("x", {"skills": ["sum"]})
    with pytest.raises(ConfigError, match="lab.models.x.label_noise: only a keyword model takes label noise"):
        full_recipe("x", {"skills": ["sum"], "label_noise": 0.2}, "hard")
    with pytest.raises(ConfigError, match=r"lab.models.k.label_noise must be a share in \[0, 1\), got 1.5"):
        full_recipe("k", {"role": "keyword", "label_noise": 1.5}, "hard")
    aggregator = full_recipe("a", {"role": "aggregator", "choice_share": 0.5}, "hard")
    assert aggregator["choice_share"] == 0.5
    assert "choice_share" not in full_recipe("a", {"role": "aggregator"})
    assert recipe_hash(aggregator) != recipe_hash(full_recipe("a", {"role": "aggregator"}, "hard"))
    with pytest.raises(ConfigError, match="models.k.choice_share: only an aggregator model takes a choice"):
        full_recipe("k", {"role": "keyword", "choice_share": 0.5}, "hard")
    with pytest.raises(ConfigError, match=r"lab.models.a.choice_share must be a share in \[0, 1\), got 1"):
        full_recipe("a", {"role": "aggregator", "choice_share": 1}, "hard")
    wide = full_recipe("a", {"role": "aggregator", "shape": {"hidden_size": 96, "layers": 3}}, "hard")
    assert wide["shape"]["hidden_size"] == 96 and wide["shape"]["head_dim"] == SHAPE["head_dim"]
    assert full_recipe("a", {"role": "aggregator", "shape": {}}, "hard")["shape"] == SHAPE
    with pytest.raises(ConfigError, match="lab.models.a.shape: unknown key 'width'; valid: hidden_size"):
        full_recipe("a", {"role": "aggregator", "shape": {"width": 96}}, "hard")
    with pytest.raises(ConfigError, match="lab.world: unknown lab world 'harder'; worlds: standard, hard"):
        full_recipe("x", {"skills": ["sum"]}, "harder")


def test_the_lab_source_draws_the_world_its_config_names():
    hard = lab_source(SplitSpec(source="lab", config="hard", size=24), "t", "data.test", 0)
    assert {i.subject for i in hard} == set(HARD_SKILLS)
    assert lab_source(SplitSpec(source="lab", size=24), "t", "data.test", 0) == generate_split("test", 24, 0)
    with pytest.raises(ConfigError, match="data.val.config: unknown lab world 'easy'; worlds: standard"):
        lab_source(SplitSpec(source="lab", config="easy", size=24), "t", "data.val", 0)


def test_the_standard_world_its_examples_and_its_config_are_unchanged():
    # Hashes taken before the hard world was added: the skill lab's questions and training examples
    questions = [[i.id, i.question, i.choices, i.gold, i.subject, i.task]
                 for split in ("val", "test") for i in generate_split(split, 120, 0)]
    assert stable_hash(questions) == "5ab83fef696f5483"
    examples = [ex.keyword_examples(50, random.Random(3)), ex.aggregator_examples(50, random.Random(4)),
                ex.expert_examples(["successor", "letter option"], 50, random.Random(5))]
    assert stable_hash(examples) == "8b9e9bf133c00b95"
    tree = compose_tree(["+experiment=skill_lab"])
    assert tree["lab"]["world"] == "standard" and tree["data"]["test"].get("config") is None
