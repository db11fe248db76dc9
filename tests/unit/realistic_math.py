"""Realistic math replies for the extraction corpus (tests/unit/test_extraction_realistic.py).

Written from how R1 distills, Qwen-Math, Llama, Mistral and Gemma answer MATH and AIME questions: boxed
answers with and without a ``<think>`` block, answers in words, Unicode minus signs, unfinished boxes and
replies cut by ``max_tokens``. Each case is (style, finish_reason, gold, expected, text): ``expected`` is
what the reply commits to (None where it commits to nothing), ``gold`` the answer it is graded against.
"""

from __future__ import annotations

R1 = "r1-distill"

MATH = [
    (R1, "stop", "204", "204", "Okay, let's see. The total is 17 * 12 = 204. Let me double check: 17*12 = "
     "170 + 34 = 204. Yes.\n</think>\n\nThe number of ways is $17 \\times 12 = 204$.\n\n\\boxed{204}"),
    (R1, "stop", "\\frac{3}{4}", "\\frac{3}{4}", "<think>\nMaybe \\boxed{\\frac{1}{2}}? No, I forgot the "
     "complement.\n</think>\n\nThe probability is $1 - \\frac{1}{4} = \\frac{3}{4}$.\n\n**Final Answer**\n"
     "\\[\\boxed{\\dfrac{3}{4}}\\]"),
    (R1, "stop", "-3", "-3", "f(1) = 4 − 14 + 7 = −3.\n</think>\n\nSo $f(1) = 4 − 14 + 7 = −3$."),
    (R1, "length", "127", None, "<think>\nThe number of nonempty subsets is 2^7 - 1 = 127. So \\boxed{127}? "
     "Hmm, wait, the problem says subsets with an odd sum. Let me recount. " * 3),
    (R1, "length", "127", None, "So there are 2^7 - 1 = \\boxed{127} nonempty subsets. Hmm, wait, that "
     "includes sets with even sums, so the answer is \\boxed{1"),
    (R1, "stop", "127", None, "Let me count: 2^7 - 1 = 127 subsets, and then \\boxed{1"),
    (R1, "length", "25", None, "<think>\nWe need the smallest n such that n^2 > 600. 24^2 = 576, 25^2 = 625. "
     "So n = 25? Wait, the problem asks for n^2 > 620. 25^2 = 625 > 620, fine. But hold on, maybe"),
    (R1, "length", "25", "25", "<think>\n24^2 = 576 < 600 < 625 = 25^2.\n</think>\n\nThe smallest such n is "
     "\\boxed{25}.\n\nTo verify: $24^2 = 576$, which is less than 600, while"),
    (R1, "stop", "2", "2", "The denominator is zero at x = 2 and x = -2, neither cancels.\n</think>\n\n"
     "The denominator $x^2 - 4$ vanishes at $x = 2$ and $x = -2$, and neither root cancels with the "
     "numerator, so there are two vertical asymptotes."),
    (R1, "stop", "70", "70", "<think>\n\\binom{8}{4} = 70.\n</think>\nThe answer is $\\boxed{70}$."),
    (R1, "length", "70", None, "Alright, so \\binom{8}{4} is 70, but the paths must avoid the point (2,2), "
     "so subtract \\binom{4}{2}\\binom{4}{2} = 36, giving 34? Wait, maybe I should recount the "
     "paths through (2,2). Wait, maybe 34? " * 4),
    (R1, "stop", "34", "34", "<think>\nTotal 70, through (2,2): 6*6 = 36, so 34.\n</think>\n\nSubtracting "
     "the "
     "36 paths through $(2,2)$ from the 70 total gives \\(\\boxed{34}\\)."),
    (R1, "stop", "1234", "1234", "Sum is 1,234.\n</think>\n\nThe sum is $\\boxed{1{,}234}$."),
    (R1, "stop", "5", "5", "The remainder is 5.\n</think>\n\nThe remainder when $2^{100}$ is divided by 7 is "
     "\\boxed{5}."),
    # --- Qwen(-Math) ---
    ("qwen", "stop", "12", "12", "To find the number of divisors, we factor $72 = 2^3 \\cdot 3^2$. The "
     "number "
     "of divisors is $(3+1)(2+1) = 12$.\n\nThus, the final answer is $\\boxed{12}$."),
    ("qwen", "stop", "\\sqrt{2}", "\\sqrt{2}", "Using the Pythagorean theorem, $d = \\sqrt{1^2 + 1^2} = "
     "\\sqrt{2}$.\n\n\\[\n\\boxed{\\sqrt{2}}\n\\]"),
    ("qwen", "stop", "-\\frac{1}{2}", "-\\frac{1}{2}", "Therefore, $\\cos 120^\\circ = "
     "\\boxed{-\\frac{1}{2}}$."),
    ("qwen", "length", "42", None, "To solve the problem, we start by letting $x$ be the number of apples. "
     "Then $3x + 2(x - 4) = 5x - 8$. Setting this equal to"),
    ("qwen", "stop", "3", "3", "The equation has three real solutions: $x = -1$, $x = 0$ and $x = 1$. The "
     "answer is three."),
    ("qwen", "stop", "-7", "-7", "So $a + b = 3 + (−10) = −7$.\n\nThe answer is $\\boxed{−7}$."),
    ("qwen", "stop", "(2, -1)", "(2, -1)", "Solving the system gives $x = 2$ and $y = -1$, so the "
     "solution is "
     "$\\boxed{(2, -1)}$."),
    ("qwen", "stop", "9", "9", "The answer is 9."),
    ("qwen", "length", "9", "9", "The answer is $\\boxed{9}$.\n\nExplanation: we first note that the sum of "
     "the digits of"),
    # --- Llama ---
    ("llama", "stop", "17", "17", "## Step 1: Set up the equation\n$2x + 3 = 37$\n\n## Step 2: Solve\n"
     "$x = 17$\n\nThe final answer is: $\\boxed{17}$"),
    ("llama", "stop", "8", "8", "## Step 1: Count the vertices\nA cube has 8 vertices.\n\nThe final answer "
     "is: $\\boxed{8}$"),
    ("llama", "length", "100", None, "## Step 1: Understand the problem\nWe need the sum of the first 10 odd "
     "numbers.\n\n## Step 2: Use the formula\nThe sum of the first n odd numbers is $n^2$, so"),
    ("llama", "stop", "6", "6", "## Step 1: Find the roots\nThe roots are 2 and 3.\n\n## Step 2: Multiply\n"
     "$2 \\cdot 3 = 6$\n\nThe final answer is: $\\boxed{6}$"),
    ("llama", "stop", "4", "4", "There are four such numbers: 11, 13, 17 and 19. So the answer is four."),
    ("llama", "stop", "15", None, "I'm not sure how to solve this problem. Could you provide more context?"),
    ("llama", "stop", "\\frac{1}{6}", "\\frac{1}{6}", "The probability of rolling a 6 is $\\frac{1}{6}$."),
    # --- Mistral ---
    ("mistral", "stop", "11", "11", " To find the answer, we add 5 and 6, which gives us 11. Therefore, the "
     "answer is \\boxed{11}."),
    ("mistral", "stop", "0", "0", " The limit is $\\boxed{0}$, since the exponential grows faster than any "
     "polynomial."),
    ("mistral", "length", "30", None, " Let's denote the three angles by $a$, $b$ and $c$. We know that "
     "$a + b + c = 180$ and that $a = 2b$. Substituting, we get"),
    ("mistral", "stop", "-2", "-2", " Therefore, the value of $k$ is $-2$."),
    ("mistral", "stop", "5", "5", " The answer is five."),
    # --- Gemma ---
    ("gemma", "stop", "24", "24", "Here's how to solve the problem:\n\n* **Arrangements:** 4! = 24\n\n"
     "**Answer:** There are $\\boxed{24}$ arrangements."),
    ("gemma", "stop", "13", "13", "**Solution:**\n\n1. Square both sides: $x + 3 = 16$\n2. Solve: $x = 13$"
     "\n\nTherefore, $x = \\boxed{13}$."),
    ("gemma", "length", "13", None, "**Solution:**\n\n1. **Square both sides:** $x + 3 = 16$\n2. **Isolate "
     "x:** subtract 3 from both sides to get"),
    ("gemma", "stop", "2", "2", "The graph of $y = \\frac{1}{x^2 - 1}$ has two vertical asymptotes."),
    ("gemma", "stop", "7", "7", "**Answer:** $\\boxed{7}$ \n\nLet me know if you'd like to see another "
     "example!"),
]
