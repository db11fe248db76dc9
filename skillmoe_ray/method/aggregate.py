"""Prompts for experts and the aggregator, answer extraction, grading and majority vote.

DESIGN section 3, steps 6-8. Answers are read by :mod:`skillmoe_ray.method.extract` (explicit statements in
the many styles models write them, never a capital letter out of the text, so "I hope this helps"
is not answer I); math answers are graded by math-verify equivalence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from skillmoe_ray.data.instances import CHOICE, Instance
from skillmoe_ray.method.extract import (  # noqa: F401 (re-exported)
    extract,
    extract_boxed,
    extract_choice,
    extract_math,
    split_reasoning,
)
from skillmoe_ray.method.skills import chat, question_text

EXPERT_SYSTEM = (
    "You are an expert problem solver. Reason step by step, check your work, and finish with "
    "the final answer in the requested format."
)
AGGREGATOR_SYSTEM = (
    "You are given a question and candidate solutions written by other models. Some of them may "
    "be wrong, and some may be empty. Judge their reasoning critically, keep what is correct, "
    "and write one final solution of your own, ending with the final answer in the requested format."
)


def answer_instruction(inst: Instance) -> str:
    """How the reply must state its final answer, by answer type."""
    if inst.answer_type == CHOICE:
        return 'End with the line "The answer is (X)", where X is the letter of the correct option.'
    return "Put the final answer inside \\boxed{}, as in: The answer is \\boxed{42}."


def expert_messages(inst: Instance, system_role: bool = True, prompts: str = "project") -> list[dict]:
    """Chain-of-thought prompt for an expert (profiles and test-time inference)."""
    if prompts == "paper":
        from skillmoe_ray.method import paper_prompts

        return paper_prompts.expert_messages(inst, question_text(inst))
    user = f"Question:\n{question_text(inst)}\n\n{answer_instruction(inst)}"
    return chat(EXPERT_SYSTEM, user, system_role)


def strip_reasoning(text: str, think_end_tag: str = "</think>") -> str:
    """The reply after its last end-of-thinking tag (the whole reply when there is none)."""
    if think_end_tag and think_end_tag in text:
        return text.rsplit(think_end_tag, 1)[1].strip()
    return text.strip()


# Characters per token of a reply, counted low so that a reply cut to its share fits any tokenizer's count.
SAFE_CHARS_PER_TOKEN = 2
CUT_MARK = "[... earlier reasoning cut to fit the aggregator's context ...] "


def fit_replies(responses: Sequence[str], room_tokens: int, think_end_tag: str = "</think>") -> list[str]:
    """The replies as the aggregator reads them, each within its share of ``room_tokens``.

    The rule (README, reliability): the reasoning before the end-of-thinking tag is dropped first; a reply
    still longer than its share (``room_tokens`` / k, counted at :data:`SAFE_CHARS_PER_TOKEN`) keeps its
    last characters, where the conclusion is, after a mark saying it was cut. Replies that fit are unchanged.
    """
    share = max(0, room_tokens // max(len(responses), 1)) * SAFE_CHARS_PER_TOKEN
    fitted = []
    for reply in responses:
        text = strip_reasoning(reply, think_end_tag)
        fitted.append(text if len(text) <= share else CUT_MARK + text[len(text) - share + len(CUT_MARK):])
    return fitted


def aggregator_messages(
    inst: Instance, responses: Sequence[str], think_end_tag: str = "</think>", system_role: bool = True,
    prompts: str = "project",
) -> list[dict]:
    """The aggregation prompt: the question and the experts' replies, reasoning before the tag removed."""
    if prompts == "paper":
        from skillmoe_ray.method import paper_prompts

        replies = [strip_reasoning(r, think_end_tag) for r in responses]
        return paper_prompts.aggregator_messages(inst, question_text(inst), replies)
    blocks = [
        f"Solution {i}:\n{strip_reasoning(r, think_end_tag) or '(empty)'}" for i, r in enumerate(responses, 1)
    ]
    user = (
        f"Question:\n{question_text(inst)}\n\nCandidate solutions:\n\n"
        + "\n\n".join(blocks)
        + f"\n\n{answer_instruction(inst)}"
    )
    return chat(AGGREGATOR_SYSTEM, user, system_role)


def extract_answer(text: str, inst: Instance, think_end_tag: str = "</think>",
                   finish_reason: str = "") -> str | None:
    """The final answer a reply to ``inst`` commits to: a letter for choice questions, an expression for math,
    None for none (the rules are :mod:`skillmoe_ray.method.extract`'s). ``finish_reason`` is the engine's
    (the :class:`~skillmoe_ray.records.Generation`'s): a reply cut by ``max_tokens`` (``"length"``) has no
    answer unless a complete final-answer statement stands before the cut."""
    letters = inst.valid_letters() if inst.answer_type == CHOICE else None
    return extract(text, letters, think_end_tag, finish_reason)


def _as_latex(expr: str) -> str:
    return expr if expr.startswith("$") else f"${expr}$"


def is_correct(answer: str | None, inst: Instance) -> bool:
    """Whether an extracted answer matches the gold answer (math-verify equivalence for math)."""
    if answer is None:
        return False
    if inst.answer_type == CHOICE:
        return answer == inst.gold
    if answer.strip() == inst.gold.strip():
        return True
    from math_verify import parse, verify

    try:
        return bool(verify(parse(_as_latex(inst.gold)), parse(_as_latex(answer))))
    except Exception:  # math-verify may fail on unparseable model output: that answer is wrong
        return False


def majority_vote(answers: Sequence[str | None]) -> str | None:
    """The most common non-empty answer; ties go to the one given first."""
    normalized = [n for n in (" ".join(a.split()) for a in answers if a) if n]
    if not normalized:
        return None
    counts = Counter(normalized)
    return max(normalized, key=lambda a: (counts[a], -normalized.index(a)))
