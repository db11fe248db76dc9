"""The skill lab's world: question generator, tokenizer, training examples, recipes (no models)."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from skillmoe_ray.data.instances import CHOICE, MATH
from skillmoe_ray.errors import ConfigError
from skillmoe_ray.lab import examples as ex
from skillmoe_ray.lab.build import full_recipe, recipe_hash
from skillmoe_ray.lab.world import COUNTRY_CODES, SKILLS, TASKS, generate_split
from skillmoe_ray.method.aggregate import expert_messages, extract_answer, is_correct
from tests.conftest import compose_tree


def solve(inst) -> str:
    """The gold answer recomputed from the question text alone (independent of the generator)."""
    q, numbers = inst.question, [int(n) for n in re.findall(r"\d+", inst.question)]
    if inst.subject == "digit addition":
        return str(sum(numbers))
    if inst.subject == "successor":
        return str(numbers[0] + 1)
    if inst.subject == "metres to cm":
        return str(numbers[0] * 100)
    if inst.subject == "last digit":
        return str(numbers[0] % 10)
    if inst.subject == "country code":
        return str(next(code for name, code in COUNTRY_CODES.items() if name in q))
    values = list(inst.choices)
    if inst.subject == "letter option":
        return "ABCD"[next(i for i, v in enumerate(values) if v.isalpha())]
    pick = max if inst.subject == "largest number" else min
    return "ABCD"[values.index(str(pick(int(v) for v in values)))]


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_every_question_has_its_exact_gold_answer_skill_and_task(seed):
    for inst in generate_split("val", 120, seed) + generate_split("test", 120, seed):
        assert inst.gold == solve(inst), inst
        assert SKILLS[inst.subject].task == inst.task
        assert inst.answer_type == SKILLS[inst.subject].answer_type
        if inst.answer_type == CHOICE:
            assert len(inst.choices) == 4 and len(set(inst.choices)) == 4


def test_eight_skills_in_three_tasks_that_each_mix_skills_and_both_answer_types_exist():
    assert len(SKILLS) >= 8 and len(TASKS) >= 3
    per_task = Counter(s.task for s in SKILLS.values())
    assert all(n >= 2 for n in per_task.values())
    assert {s.answer_type for s in SKILLS.values()} == {CHOICE, MATH}
    assert all(len(name) <= 20 for name in SKILLS)  # the skill stage drops longer keywords


@pytest.mark.parametrize("seed", [0, 3])
def test_splits_are_disjoint_balanced_sized_and_seeded(seed):
    val, test = generate_split("val", 120, seed), generate_split("test", 96, seed)
    assert len(val) == 120 and len(test) == 96
    key = lambda i: (i.question, i.choices)  # noqa: E731
    assert not {key(i) for i in val} & {key(i) for i in test}
    assert len({key(i) for i in val}) == 120
    assert set(Counter(i.subject for i in test).values()) == {12}
    assert generate_split("val", 120, seed) == val
    assert [key(i) for i in generate_split("val", 120, seed + 1)] != [key(i) for i in val]
    assert len({i.id for i in val + test}) == 216


def test_a_split_larger_than_a_skills_question_space_is_an_error_naming_skill_and_key():
    with pytest.raises(
        ConfigError,
        match=r"skill '[a-z ]+' has only about \d+ distinct questions per split, "
              r"125 asked for; lower data.test.size",
    ):
        generate_split("test", 1000, 0)
    with pytest.raises(ConfigError, match="data.val.size must be >= 1"):
        generate_split("val", 0, 0)


def test_the_lab_tokenizer_round_trips_prompts_and_answers_exactly(tmp_path):
    from skillmoe_ray.lab.build import ensure_tokenizer

    tok = ensure_tokenizer(tmp_path)
    inst = generate_split("test", 8, 0)[0]
    for text in [
        "The answer is \\boxed{9900}.",
        "The answer is (C).",
        "Skills: metres to cm",
        expert_messages(inst)[1]["content"],
    ]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == text
    assert len(tok(" 700", add_special_tokens=False)["input_ids"]) == 3  # numbers are digits


def test_aggregator_examples_state_the_candidates_majority():
    rng = random.Random(0)
    assert ex.majority_answer(["7", "", "7"]) == "7"
    assert ex.majority_answer(["3", "5", "5"]) == "5"
    assert ex.majority_answer(["3", "5", "6"]) == "3"
    for messages, response in ex.aggregator_examples(200, rng):
        solutions = re.findall(r"Solution \d:\n(.*)", messages[-1]["content"])
        stated = [s for s in solutions if s != "(empty)"]
        assert Counter(stated)[response] == max(Counter(stated).values())


def test_expert_examples_cover_only_the_experts_own_skills():
    rng = random.Random(1)
    for messages, response in ex.expert_examples(["successor", "letter option"], 100, rng):
        assert "comes right after" in messages[-1]["content"] or "is a letter" in messages[-1]["content"]
        assert response.startswith("The answer is")


def test_default_pool_has_two_specialists_per_skill_and_no_expert_strong_on_half():
    lab = compose_tree(["+experiment=skill_lab"])["lab"]["models"]
    experts = {n: r["skills"] for n, r in lab.items() if r.get("role", "expert") == "expert"}
    assert len(experts) >= 6
    assert {lab[n].get("arch") for n in experts} == {"llama", "qwen3", "mistral"}
    per_skill = Counter(s for skills in experts.values() for s in skills)
    assert set(per_skill) == set(SKILLS) and min(per_skill.values()) >= 2
    assert all(2 <= len(skills) <= len(SKILLS) // 2 for skills in experts.values())
    roles = Counter(r.get("role", "expert") for r in lab.values())
    assert roles["keyword"] == 1 and roles["aggregator"] == 1


def test_recipes_are_checked_and_hashed_with_their_defaults():
    base = full_recipe("x", {"skills": ["successor"]})
    assert base["train"]["steps"] > 0 and base["role"] == "expert"
    assert recipe_hash(base) == recipe_hash(
        full_recipe("x", {"skills": ["successor"], "steps": base["train"]["steps"]})
    )
    assert recipe_hash(base) != recipe_hash(full_recipe("x", {"skills": ["successor"], "seed": 9}))
    with pytest.raises(ConfigError, match="lab.models.x.skills: unknown skill 'juggling'"):
        full_recipe("x", {"skills": ["juggling"]})
    with pytest.raises(ConfigError, match="lab.models.x.role: unknown role 'judge'"):
        full_recipe("x", {"role": "judge"})
    with pytest.raises(ConfigError, match="lab.models.x: unknown key 'stpes'"):
        full_recipe("x", {"skills": ["successor"], "stpes": 3})
    with pytest.raises(ConfigError, match="needs at least one skill"):
        full_recipe("x", {})


def test_answers_in_the_trained_format_are_read_and_graded():
    for inst in generate_split("val", 16, 0):
        assert is_correct(extract_answer(ex.answer_text(inst.gold, inst.answer_type), inst), inst)


def test_progress_from_workers_is_logged_with_counts_rate_and_eta_when_not_a_terminal(caplog):
    import logging
    import queue

    from skillmoe_ray.progress import StepProgress

    q = queue.Queue()
    for _ in range(4):
        q.put(("model-a", 25, 0.5))
    progress = StepProgress(400, "training", every_s=0.0)
    with caplog.at_level(logging.INFO, logger="skillmoe_ray.progress"):
        progress.drain(q, timeout=0.1)
    assert progress.done == 100
    assert (
        "training: 100/400 steps" in caplog.text
        and "steps/s, ETA" in caplog.text
        and "model-a loss 0.500" in caplog.text
    )


def test_the_oracle_needs_gold_skills():
    from skillmoe_ray.data.instances import Instance
    from skillmoe_ray.method.catalog import MethodContext, plan_oracle

    insts = [
        Instance("a", "t", "q", "1", MATH, subject="s1"),
        Instance("b", "t", "q2", "2", MATH, subject="s2"),
    ]
    ctx = MethodContext(
        test=insts,
        experts=["x", "y"],
        recruitments={},
        aggregator="x",
        val_accuracy={},
        k=1,
        seed=0,
        skill_accuracy={"x": {"s1": 0.9, "s2": 0.1}, "y": {"s2": 0.8}},
    )
    plan = plan_oracle(ctx)[0]
    assert plan.slots == {"a": [("x", 0)], "b": [("y", 0)]} and plan.aggregator == {"a": None, "b": None}
    with pytest.raises(ConfigError, match="'oracle' needs the gold skill"):
        plan_oracle(
            MethodContext(
                test=[Instance("c", "t", "q", "1", MATH)],
                experts=["x"],
                recruitments={},
                aggregator="x",
                val_accuracy={},
                k=1,
                seed=0,
            )
        )
