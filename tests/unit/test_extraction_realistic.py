"""Extraction on realistic replies of the pool's model families: at least 95% read right, no misread.

The corpus (tests/unit/realistic_choice.py, tests/unit/realistic_math.py) holds replies written from how
R1 distills, Qwen, Llama, Mistral and Gemma answer, with the engine's ``finish_reason``: a reply cut by
``max_tokens`` (``"length"``) or with an unclosed reasoning block commits to no answer unless a complete
final-answer statement stands before the cut. A misread (an answer read that the reply does not commit to,
or the wrong one) is counted apart from a miss and must not happen; the score is printed (``pytest -s``).
"""

from __future__ import annotations

from skillmoe_ray.data.instances import Instance
from skillmoe_ray.method.aggregate import extract_answer, is_correct
from tests.unit.realistic_choice import CHOICE
from tests.unit.realistic_math import MATH


def _outcomes() -> list[tuple[str, str, str | None, str | None]]:
    """(verdict, style, expected, got) per case: verdict "right", "miss" or "misread"."""
    out = []
    for style, finish, n, expected, text in CHOICE:
        inst = Instance("q", "t", "Which one?", expected or "A", "choice", tuple(str(i) for i in range(n)))
        got = extract_answer(text, inst, "</think>", finish)
        verdict = "right" if got == expected else "miss" if got is None else "misread"
        out.append((verdict, style, expected, got))
    for style, finish, gold, expected, text in MATH:
        inst = Instance("q", "t", "Compute it.", gold, "math")
        got = extract_answer(text, inst, "</think>", finish)
        ok = got is None if expected is None else got is not None and is_correct(got, inst)
        out.append(("right" if ok else "miss" if got is None else "misread", style, expected, got))
    return out


def test_the_corpus_is_large_varied_and_has_replies_without_an_answer():
    cases = [(c[0], c[1], c[3]) for c in CHOICE] + [(m[0], m[1], m[3]) for m in MATH]
    assert len(cases) >= 120
    assert {"r1-distill", "qwen", "llama", "mistral", "gemma"} <= {style for style, _, _ in cases}
    assert {c[2] for c in CHOICE} == {4, 10}
    assert sum(expected is None for _, _, expected in cases) >= 0.15 * len(cases)
    assert sum(finish == "length" for _, finish, _ in cases) >= 20


def test_at_least_95_percent_read_right_and_no_misread():
    outcomes = _outcomes()
    right = sum(v == "right" for v, *_ in outcomes)
    misreads = [o for o in outcomes if o[0] == "misread"]
    misses = [o for o in outcomes if o[0] == "miss"]
    print(f"\nextraction corpus: {right}/{len(outcomes)} read right ({right / len(outcomes):.1%}), "
          f"{len(misses)} missed, {len(misreads)} misread")
    assert not misreads, misreads
    assert right / len(outcomes) >= 0.95, misses


def test_cut_and_unclosed_replies_give_no_answer():
    """Every cut reply without a final-answer statement, and every unclosed reasoning block, reads None."""
    choice = Instance("q", "t", "Which one?", "B", "choice", ("w", "x", "y", "z"))
    for _style, finish, _n, expected, text in CHOICE:
        if expected is None and (finish == "length" or "<think>" in text and "</think>" not in text):
            assert extract_answer(text, choice, "</think>", finish) is None, text
    assert extract_answer("<think>\nThe answer is (B).", choice) is None
    assert extract_answer("The answer is (B). Wait, but", choice, "</think>", "length") is None
    assert extract_answer("Final answer: (B)\n\nBecause the", choice, "</think>", "length") == "B"
