"""Prompts, answer extraction, grading and majority vote (DESIGN section 3, steps 6-8)."""

from __future__ import annotations

import pytest

from skillmoe_ray.data.instances import CHOICE, MATH, Instance
from skillmoe_ray.method.aggregate import (
    aggregator_messages,
    expert_messages,
    extract_answer,
    extract_boxed,
    extract_choice,
    is_correct,
    majority_vote,
)

MC = Instance("c1", "t", "Which is a prime?", "B", CHOICE, choices=("4", "7", "9", "15"))
MATH_INST = Instance("m1", "t", "Compute 4/15 as a fraction.", "\\frac{4}{15}", MATH)
AIME = Instance("m2", "aime", "Find the answer.", "204", MATH)
TEMPLATE_TOKENS = ("<|user|>", "<|im_start|>", "<|assistant|>", "[INST]", "<s>", "<|begin_of_text|>")


# --- extract_choice ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Reasoning... The answer is (B)", "B"),
        ("Answer: C", "C"),
        ("So the answer is **D**.", "D"),
        ("Final: \\boxed{A}", "A"),
        ("(C)", "C"),
        ("I hope this helps", None),
        ("I think the answer is unclear", None),
        ("", None),
    ],
)
def test_extract_choice_statements(text, expected):
    """Letters are read only from explicit answer statements, boxes, or a lone-letter reply."""
    assert extract_choice(text, "ABCD") == expected


def test_extract_choice_ignores_stray_capitals():
    """The research code's bug: a stray capital ("I", "A study") must not be read as the answer."""
    assert extract_choice("A study shows I am unsure. Because Of This, no idea.", "ABCDEFGHIJ") is None


def test_extract_choice_letter_outside_valid_letters_ignored():
    """E with four choices is not a valid answer."""
    assert extract_choice("The answer is (E)", "ABCD") is None
    assert extract_choice("The answer is (E)", "ABCDE") == "E"


def test_extract_choice_last_statement_wins():
    """With two explicit statements, the last one is the answer."""
    assert extract_choice("At first the answer is (A). On reflection, the answer is (C).", "ABCD") == "C"
    assert extract_choice("The answer is (B). Double-check: \\boxed{D}", "ABCD") == "D"


def test_extract_choice_last_valid_statement_wins_over_invalid():
    """An invalid later letter does not hide an earlier valid statement."""
    assert extract_choice("The answer is (B). Or maybe the answer is (F).", "ABCD") == "B"


# --- extract_boxed -------------------------------------------------------------------------------


def test_extract_boxed_last_box_wins():
    """The last \\boxed{...} is the answer."""
    assert extract_boxed("first \\boxed{1}, then \\boxed{2}") == "2"


def test_extract_boxed_nested_braces():
    """Nested braces are balanced: \\boxed{\\frac{1}{2}} -> \\frac{1}{2}."""
    assert extract_boxed("so \\boxed{\\frac{1}{2}} done") == "\\frac{1}{2}"


def test_extract_boxed_unbalanced_is_none():
    """An unclosed box gives None."""
    assert extract_boxed("answer \\boxed{\\frac{1}{2}") is None


def test_extract_boxed_none_when_absent():
    """No box gives None."""
    assert extract_boxed("The answer is 42.") is None


# --- extract_answer ------------------------------------------------------------------------------


def test_extract_answer_reads_the_reasonings_box_only_when_the_final_text_states_nothing():
    """The final text's box wins; a box only inside the reasoning (before </think>) is the fallback."""
    assert extract_answer("<think>maybe \\boxed{7}</think>I am not sure.", MATH_INST) == "7"
    assert extract_answer("<think>\\boxed{7}</think>So \\boxed{8}", MATH_INST) == "8"
    assert extract_answer("<think>\\boxed{7}</think>The answer is 9.", MATH_INST) == "9"


def test_extract_answer_choice_after_thinking():
    """For choice questions the letter comes from the text after </think>."""
    text = "<think>The answer is (A)?</think>The answer is (B)"
    assert extract_answer(text, MC) == "B"
    assert extract_answer("<think>The answer is (A)</think>no idea", MC) is None


def test_extract_answer_uses_valid_letters_of_instance():
    """The instance's own options bound the letters (4 choices: E is invalid)."""
    assert extract_answer("The answer is (E)", MC) is None


# --- is_correct ----------------------------------------------------------------------------------


def test_is_correct_choice_equality():
    """Choice answers are correct iff they equal the gold letter."""
    assert is_correct("B", MC)
    assert not is_correct("C", MC)
    assert not is_correct(None, MC)


@pytest.mark.parametrize(
    "inst, answer, expected",
    [
        (MATH_INST, "4/15", True),
        (MATH_INST, "\\frac{4}{15}", True),
        (MATH_INST, "\\frac{8}{30}", True),
        (MATH_INST, "\\frac{5}{15}", False),
        (AIME, "204", True),
        (AIME, "204.0", True),
        (AIME, "205", False),
        (AIME, None, False),
        (AIME, "}}{{\\frac{@@##", False),
        (AIME, "", False),
    ],
)
def test_is_correct_math_verify(inst, answer, expected):
    """Math answers graded by math-verify equivalence; junk is simply wrong (no exception)."""
    assert is_correct(answer, inst) is expected


# --- majority_vote -------------------------------------------------------------------------------


def test_majority_vote_most_common():
    """The most common non-empty answer wins."""
    assert majority_vote(["A", "B", "B", "C"]) == "B"


def test_majority_vote_ignores_none_and_empty():
    """None and empty answers do not vote."""
    assert majority_vote([None, None, "C", None, ""]) == "C"
    assert majority_vote([None, "", None]) is None
    assert majority_vote([]) is None


def test_majority_vote_tie_goes_to_first_given():
    """Ties go to the answer given first."""
    assert majority_vote(["C", "A", "A", "C"]) == "C"
    assert majority_vote([None, "x+1", "2"]) == "x+1"


def test_majority_vote_whitespace_normalized():
    """Answers differing only in whitespace are one answer."""
    assert majority_vote(["x +  1", "2", " x + 1 "]) == "x + 1"


def test_majority_vote_whitespace_only_answers_do_not_vote():
    """Whitespace-only answers are empty after normalization and must not win."""
    assert majority_vote(["  ", "\t", "A"]) == "A"


# --- expert_messages / aggregator_messages -------------------------------------------------------


def _assert_plain_chat(msgs):
    assert [m["role"] for m in msgs] == ["system", "user"]
    for m in msgs:
        for token in TEMPLATE_TOKENS:
            assert token not in m["content"]


def test_expert_messages_built_once():
    """Expert prompt: one system + one user message, no chat-template tokens in the content."""
    msgs = expert_messages(MC)
    _assert_plain_chat(msgs)
    assert msgs[1]["content"].count("Which is a prime?") == 1
    assert "(B) 7" in msgs[1]["content"]


def test_expert_messages_without_system_role():
    """system_role=False: one user message holding the system text."""
    msgs = expert_messages(MC, system_role=False)
    assert len(msgs) == 1 and msgs[0]["role"] == "user"
    assert "expert problem solver" in msgs[0]["content"]


def test_answer_instruction_differs_by_type():
    """Choice prompts ask for "The answer is (X)"; math prompts ask for \\boxed."""
    mc_user = expert_messages(MC)[1]["content"]
    math_user = expert_messages(MATH_INST)[1]["content"]
    assert "The answer is (X)" in mc_user and "\\boxed" not in mc_user
    assert "\\boxed" in math_user and "The answer is (X)" not in math_user


def test_aggregator_messages_include_every_response_without_reasoning():
    """Every response appears, with its thinking removed; empty responses show as "(empty)"."""
    responses = [
        "<think>secret reasoning one</think>Solution text ALPHA. The answer is (B)",
        "",
        "No thinking here: BETA. The answer is (C)",
    ]
    msgs = aggregator_messages(MC, responses)
    _assert_plain_chat(msgs)
    user = msgs[1]["content"]
    assert "ALPHA" in user and "BETA" in user
    assert "secret reasoning one" not in user and "</think>" not in user
    assert user.count("(empty)") == 1
    assert user.index("ALPHA") < user.index("(empty)") < user.index("BETA")
    assert user.count("Which is a prime?") == 1
    assert "The answer is (X)" in user


def test_aggregator_messages_math_instruction():
    """The aggregator of a math question is asked for a boxed answer."""
    user = aggregator_messages(MATH_INST, ["\\boxed{1}", "\\boxed{2}", "\\boxed{3}"])[1]["content"]
    assert "\\boxed{}" in user
    assert all(f"\\boxed{{{i}}}" in user for i in (1, 2, 3))


def test_extract_boxed_skips_an_unclosed_last_box():
    """A truncated reply whose last box never closes still yields its earlier complete box."""
    assert extract_boxed("so \\boxed{12} and then \\boxed{1") == "12"
