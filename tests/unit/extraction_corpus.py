"""A corpus of realistic model outputs with the answer each one states, for the extraction tests.

Final-answer styles of the paper's pool (R1-distill ``<think>`` blocks full of trial answers, Qwen, Llama,
Mistral, Phi, Gemma, MedMCQA-style "Ans. is 'c'"), markdown and LaTeX wrappers, lowercase letters,
negations and self-corrections, ten-option letters followed by words, and math with and without boxes.
Each case is (text, answer_type, n_options, expected, ambiguous): ``expected`` is what the output states;
``ambiguous`` cases state their answer in a way no rule should be trusted to read (a miss is fine there).
"""

from __future__ import annotations

THINK = (
    "<think>\nOkay, let me work through this. Option A looks tempting but A) ignores the constant. "
    "Maybe the answer is (C)? Wait, no, C fails the check. B and D remain... I think it's {x}.\n</think>\n\n"
)
COT = (
    "Let's think step by step. First, eliminate the options that contradict the data. "
    "(A) is ruled out early.\n"
)
OPTION_TEXT = {
    "A": "Mitochondria",
    "B": "Ribosome",
    "C": "Golgi apparatus",
    "D": "Nucleus",
    "E": "Vacuole",
    "G": "Lysosome",
    "J": "None of these",
}

# (template, needs ten options); {X} the letter, {x} lowercase, {Y} another letter, {T} the option's text.
CHOICE_STYLES = [
    ("The answer is ({X}).", False),
    ("The answer is {X}.", False),
    ("Answer: {X}", False),
    ("**Answer:** **{X}**", False),
    ("**Answer: ({X})**", False),
    ("So the answer should be ({X}).", False),
    ("Hence the answer is $({X})$.", False),
    ("Thus the answer is ({x}).", False),
    ("Option {X} is correct.", False),
    ("({X}) is correct.", False),
    ("{X} is the correct answer.", False),
    ("Correct option: {X}", False),
    ("The correct answer is: {X}) {T}", False),
    ("Ans. is '{x}' i.e., {T}", False),
    ("\\textbf{{({X})}}", False),
    ("\\boxed{{{X}}}", False),
    ("The final answer is $\\boxed{{\\text{{{X}}}}}$.", False),
    ("Final Answer: The final answer is $\\boxed{{{X}}}$. I hope it is correct.", False),
    ("The best answer is {X}.", False),
    ("Answer - {X}", False),
    ("The answer is ({X}) {T}", True),
    ("The answer is not ({Y}); it is ({X}).", False),
    ("The answer is ({Y}). Wait, let me reconsider the second condition. The answer is ({X}).", False),
    ("I will go with {X}.", False),
    ("The answer is I think ({X}).", True),
    ("## Final Answer\n**({X})**", False),
    ("**The answer is ({X})**", False),
    ("The correct choice is ({X}).", False),
    ("Therefore, the correct answer is {X}) {T}.", False),
    ("Answer: ({x})", False),
]
LETTER_SETS = {False: ("A", "B", "C", "D"), True: ("G", "J", "C", "E")}
OTHER = {"A": "C", "B": "A", "C": "B", "D": "B", "E": "A", "G": "A", "J": "D"}

MATH_STYLES = [  # (template, gold); {N} the gold as written in the output
    ("So the total is {N}. The answer is \\boxed{{{N}}}.", None),
    ("The answer is {N}.", None),
    ("<think>\nTry 10 first: too small. Then \\boxed{{{N}}} works.\n</think>\nThat settles it.", None),
    ("Final Answer: The final answer is $\\boxed{{{N}}}$. I hope it is correct.", None),
    ("<think>\nMaybe \\boxed{{10}}? No, I miscounted.\n</think>\n**Final answer:** \\boxed{{{N}}}", None),
    ("Adding the parts gives $\\boxed{{{N}}}$", None),
    ("Therefore, the final answer is: $\\boxed{{{N}}}$.", None),
    ("We get \\boxed{{{N}}} as the number of ways.", None),
]
MATH_GOLDS = ("204", "17", "1234", "\\frac{3}{4}")
MATH_WRITTEN = {"204": "204", "17": "17", "1234": "1,234", "\\frac{3}{4}": "\\frac{3}{4}"}

HAND_WRITTEN = [
    ("I hope this helps.", "choice", 4, None, False),
    ("A study shows that I am unsure. Because Of This, no idea.", "choice", 10, None, False),
    ("(A) 12\n(B) 14\n(C) 16\n(D) 18", "choice", 4, None, False),
    ("The answer is a prime number, so option (D).", "choice", 4, "D", True),
    ("After weighing both, I'd say B.", "choice", 4, "B", True),
    ("<think>The answer is (A). Hmm, A fails.</think>\nThe answer is (B)", "choice", 4, "B", False),
    ("<think>The answer is (A)</think>\nI cannot decide.", "choice", 4, None, False),
    ("B", "choice", 4, "B", False),
    ("(C).", "choice", 4, "C", False),
    ("The answer is (E).", "choice", 4, None, False),
    ("The answer is 3/4.", "math", 0, "\\frac{3}{4}", False),
    ("The answer is twelve.", "math", 0, "12", False),
    ("Thus $x = \\boxed{-5}$.", "math", 0, "-5", False),
    ("The result is \\boxed{1\\,234}.", "math", 0, "1234", False),
    ("So the probability is $\\frac{1}{6}$.", "math", 0, "\\frac{1}{6}", False),
]


def cases() -> list[tuple[str, str, int, str | None, bool]]:
    """Every case of the corpus."""
    out = []
    for template, ten in CHOICE_STYLES:
        for i, x in enumerate(LETTER_SETS[ten]):
            body = template.format(X=x, x=x.lower(), Y=OTHER[x], T=OPTION_TEXT[x])
            prefix = (THINK.format(x=OTHER[x]), COT, "")[i % 3]
            out.append((prefix + body, "choice", 10 if ten else 4, x, False))
    for template, _ in MATH_STYLES:
        for gold in MATH_GOLDS:
            out.append((template.format(N=MATH_WRITTEN[gold]), "math", 0, gold, False))
    return out + HAND_WRITTEN
