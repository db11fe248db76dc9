"""Prompts for experts and the aggregator, answer extraction, grading and majority vote.

DESIGN section 3, steps 6-8. Extraction is strict on purpose: a choice letter is read only from an
explicit answer statement ("The answer is (B)", "Answer: B", a boxed letter, or a reply that is
just the letter), never from any capital letter in the text, so "I hope this helps" is not
answer I. Math answers are the last \\boxed{...} and are graded by math-verify equivalence.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from skillmoe_ray.data.instances import CHOICE, Instance
from skillmoe_ray.skills import chat, question_text

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


def expert_messages(inst: Instance, system_role: bool = True) -> list[dict]:
    """Chain-of-thought prompt for an expert (profiles and test-time inference)."""
    user = f"Question:\n{question_text(inst)}\n\n{answer_instruction(inst)}"
    return chat(EXPERT_SYSTEM, user, system_role)


def strip_reasoning(text: str, think_end_tag: str = "</think>") -> str:
    """The reply after its last end-of-thinking tag (the whole reply when there is none)."""
    if think_end_tag and think_end_tag in text:
        return text.rsplit(think_end_tag, 1)[1].strip()
    return text.strip()


def aggregator_messages(
    inst: Instance, responses: Sequence[str], think_end_tag: str = "</think>", system_role: bool = True
) -> list[dict]:
    """The aggregation prompt: the question and the experts' replies, reasoning before the tag removed."""
    blocks = [
        f"Solution {i}:\n{strip_reasoning(r, think_end_tag) or '(empty)'}" for i, r in enumerate(responses, 1)
    ]
    user = (
        f"Question:\n{question_text(inst)}\n\nCandidate solutions:\n\n"
        + "\n\n".join(blocks)
        + f"\n\n{answer_instruction(inst)}"
    )
    return chat(AGGREGATOR_SYSTEM, user, system_role)


_BOXED_LETTER = re.compile(r"\\boxed\{\s*(?:\\text\{\s*)?\(?([A-J])\)?\s*\}?\s*\}")
_STATED_LETTER = re.compile(
    r"answer\s*(?:is|:|=)?\s*(?:option\s*|choice\s*)?[:\s]*\**\s*(?:\(([A-J])\)|([A-J])(?=[\s.,;:!*)\]]|$))",
    re.IGNORECASE,
)
_LONE_LETTER = re.compile(r"^\**\(?([A-J])\)?[.)]?\**$")


def extract_choice(text: str, letters: str) -> str | None:
    """The choice letter a reply states as its answer, or None.

    The last explicit statement wins. Letters outside ``letters`` are ignored.
    """
    found: list[tuple[int, str]] = []
    for match in _BOXED_LETTER.finditer(text):
        found.append((match.start(), match.group(1)))
    for match in _STATED_LETTER.finditer(text):
        letter = match.group(1) or match.group(2)
        if letter.isupper():
            found.append((match.start(), letter))
    found = [(pos, letter) for pos, letter in found if letter in letters]
    if found:
        return max(found)[1]
    lone = _LONE_LETTER.match(text.strip())
    if lone and lone.group(1) in letters:
        return lone.group(1)
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last complete \\boxed{...} (or \\fbox{...}), with nested braces balanced."""
    starts = sorted(m.end() for m in re.finditer(r"\\(?:boxed|fbox)\{", text))
    for begin in reversed(starts):
        depth, pos = 1, begin
        while pos < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[pos], 0)
            pos += 1
        if depth == 0:
            return text[begin : pos - 1].strip()
    return None


def extract_answer(text: str, inst: Instance, think_end_tag: str = "</think>") -> str | None:
    """The final answer of a reply to ``inst``: a letter for choice questions, an expression for math."""
    final = strip_reasoning(text, think_end_tag)
    if inst.answer_type == CHOICE:
        return extract_choice(final, inst.valid_letters())
    return extract_boxed(final)


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
