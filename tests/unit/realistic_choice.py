"""Realistic multiple-choice replies for the extraction corpus (tests/unit/test_extraction_realistic.py).

Written from how the paper's pool answers: R1 distills (a ``<think>`` block, its opening tag often in the
prompt so only ``</think>`` is generated), Qwen, Llama, Mistral and Gemma instruct models; four options
(MMLU-Pro style prompts cut to four, GPQA, MedMCQA) and ten (MMLU-Pro). Each case is
(style, finish_reason, n_options, expected, text): ``expected`` is the letter the reply commits to, None
where it commits to none (cut mid-reasoning, stuck in "Wait, maybe (B)?", no letter stated, every option
rejected).
"""

from __future__ import annotations

R1 = "r1-distill"
LOOP = "Wait, maybe (B)? Let me re-check the second step. " * 6

CHOICE = [
    # --- R1 distills ---
    (R1, "stop", 4, "C", "Okay, so I need to figure out which gas deviates most. Maybe the answer is (A)? "
     "No, "
     "helium is nearly ideal. Ammonia has hydrogen bonding...\n</think>\n\nAmmonia has the strongest "
     "intermolecular forces.\n\n**Answer: (C)**"),
    (R1, "stop", 4, "B", "<think>\nFirst, recall Le Chatelier. Adding pressure shifts toward fewer moles. "
     "Option "
     "A would be right if the reaction were endothermic... but it isn't.\n</think>\n\nThe equilibrium shifts "
     "toward fewer moles of gas.\n\nThe answer is (B)."),
    (R1, "stop", 4, "D", "Let me think. The options are A) 2, B) 4, C) 6, D) 8. 2^3 = 8.\n</think>\n\n"
     "Since $2^3 = 8$, the correct answer is $\\boxed{D}$."),
    (R1, "stop", 10, "G", "<think>\nThe enzyme is lysosomal. Could it be (C)? No, that's the Golgi. So G.\n"
     "</think>\n\n**Final Answer**\n\\boxed{G}"),
    (R1, "stop", 4, "A", "Hmm, the ratio is 3:1 so the dominant phenotype... wait, maybe (B)? No, B is the "
     "recessive ratio.\n</think>\n\nThe expected ratio of dominant to recessive phenotypes is 3:1.\n\n"
     "Answer: A"),
    (R1, "stop", 10, "J", "<think>\nNone of the standard values match... let me recompute. 0.25 * 4 = 1. "
     "Yes, J.\n</think>\n\nAfter recomputing, the value is 1.0 mol.\n\nThe answer is (J)."),
    (R1, "length", 4, None, "<think>\nOkay, the question asks for the rate-determining step. The first step "
     "is slow, so maybe (A)? But the intermediate... Wait, maybe (B)? Let me re-check. " + LOOP),
    (R1, "length", 4, None, "Alright, let's parse the question. The patient presents with fever and a rash. "
     "The answer is probably (C), measles. Hmm, but Koplik spots are not mentioned. Wait, maybe (B)? "
     "" + LOOP),
    (R1, "length", 10, None, "<think>\nLet me list the options: (A) 12 J, (B) 24 J, (C) 36 J ... (J) 120 J. "
     "The work is F times d = 12 * 3 = 36, so (C)? But the angle is 60 degrees, so cos 60 = 0.5, giving 18 "
     "J, which is not listed. Hmm, so maybe I misread. Let me redo this. If the force were"),
    (R1, "length", 4, None, "Okay, so the answer is (D)? Let me verify by plugging in. Actually no, the "
     "sign is wrong. So the answer would be (A) if the charge were negative. The charge is positive, so"),
    (R1, "stop", 4, None, "<think>\nI keep going back and forth between (A) and (C)."),
    (R1, "length", 4, None, "<think>\nStep 1: the molar mass of NaCl is 58.44 g/mol. Step 2: 11.7 g / 58.44 "
     "= 0.2 mol. So the molarity is 0.2 / 0.5 = 0.4 M, that's (B). Wait, the volume was 250 mL, not 500. "
     "So 0.2 / 0.25 = 0.8 M, (D). Let me double-check the mass"),
    (R1, "stop", 4, "B", "The key is that mitochondria have their own DNA. So (B).\n</think>\n\n"
     "Mitochondria contain their own circular DNA, consistent with endosymbiosis.\n\nThe answer is (B)"),
    (R1, "stop", 4, "C", "<think>\nOption A: wrong. Option B: wrong units. Option C matches. Option D is a "
     "distractor.\n</think>\n\nOption C is correct because the units and magnitude both match."),
    (R1, "length", 4, "A", "<think>\nShort check: the pH of 0.01 M HCl is 2.\n</think>\n\n"
     "**Final answer: (A)**\n\nExplanation: HCl is a strong acid, so [H+] = 0.01 M and pH = -log(0.01) = 2. "
     "The other options correspond to a weak acid with"),
    (R1, "length", 10, "E", "<think>\nIt's E: the only option with a positive entropy change.\n</think>\n\n"
     "Answer: E.\n\nTo see why, compare the number of moles of gas on each side of the reaction: in (E) "
     "two moles of solid produce three moles of"),
    (R1, "length", 4, None, "<think>\nRecall it's (C).\n</think>\n\nThe answer is (C). Hmm, wait, actually "
     "the question asks for the exception, so I should reconsider whether"),
    (R1, "stop", 4, "D", "Alright, D is the only one consistent with a first-order decay.\n</think>\n\n"
     "Since the half-life is constant, the reaction is first order: the answer is **D**."),
    (R1, "stop", 10, "H", "<think>\nThe tenth option is J, so H is the eighth: 2.5 atm. Yes.\n</think>\n\n"
     "The final pressure is 2.5 atm.\n\nThe answer is (H)."),
    (R1, "stop", 4, "B", "<think>\nCould the answer be (D)? Probably not: D ignores friction.\n</think>\n\n"
     "Friction reduces the final speed, so the answer is (B)."),
    # --- Qwen ---
    ("qwen", "stop", 4, "A", "To determine the correct option, let's analyze each statement:\n\n1. **Option "
     "A**: Correct, since the derivative of $e^x$ is $e^x$.\n2. **Option B**: Incorrect.\n\nTherefore, the "
     "answer is (A)."),
    ("qwen", "stop", 10, "F", "Let's solve step by step.\n\nThe kinetic energy is $\\frac{1}{2}mv^2 = "
     "\\frac{1}{2}(2)(3)^2 = 9$ J.\n\nThe answer is (F)."),
    ("qwen", "stop", 4, "C", "The correct answer is C) Golgi apparatus.\n\nThe Golgi apparatus modifies, "
     "sorts and packages proteins for secretion."),
    ("qwen", "stop", 4, "D", "### Step 1: Identify the reaction type\nThis is a redox reaction.\n\n### Step "
     "2: Find the oxidizing agent\nMnO4- is reduced.\n\n### Final Answer\nThe answer is $\\boxed{D}$."),
    ("qwen", "stop", 10, "I", "We compute the determinant: $3 \\cdot 4 - 2 \\cdot 1 = 10$.\n\nThus, the "
     "answer is **(I)**."),
    ("qwen", "stop", 4, None, "None of the options, (A) through (D), matches the computed value of 7.5 m/s. "
     "There may be an error in the question."),
    ("qwen", "stop", 4, "B", "答案是 (B)。\n\nThe answer is (B)."),
    ("qwen", "stop", 4, "C", "The answer is （Ｃ）."),
    ("qwen", "length", 4, None, "To solve this problem, we need to consider the conservation of momentum. "
     "Initially, the total momentum is $m_1 v_1 + m_2 v_2 = 2 \\cdot 3 + 1 \\cdot 0 = 6$. After the "
     "collision, the two objects stick together, so (A) and (C) can be ruled out because"),
    ("qwen", "stop", 4, "A", "Answer: A\n\nExplanation: The sympathetic nervous system triggers the fight or "
     "flight response. If the question asked about rest and digest, the answer would be B."),
    ("qwen", "stop", 10, "C", "The answer is (C).\n\nNote: (D) is a common misconception; (C) accounts for "
     "the relativistic correction."),
    ("qwen", "stop", 4, "D", "Let's evaluate each option:\n(A) is wrong because the charge is conserved.\n"
     "(B) is incorrect.\n(C) is incorrect.\n(D) is correct.\n\nThe answer is (D)."),
    ("qwen", "stop", 4, "B", "The answer is not (A) but (B), since A describes mitosis."),
    ("qwen", "stop", 4, None, "Both (B) and (C) seem plausible, and without more information I cannot decide "
     "between them."),
    ("qwen", "stop", 10, "A", "Step 1: ... Step 2: ... The correct option is: (A) 0.5 M"),
    ("qwen", "length", 4, "C", "**Answer: C**\n\n**Explanation:**\n\n1. The first law states that energy is "
     "conserved.\n2. In an adiabatic process, $Q = 0$, so $\\Delta U = -W$.\n3. Since the gas does work on"),
    ("qwen", "stop", 4, "A", "The answer is A."),
    ("qwen", "stop", 4, "D", "Given the options, the best choice is (D)."),
    ("qwen", "stop", 10, "B", "The answer is (B) 1.2 × 10^−3 M."),
    # --- Llama ---
    ("llama", "stop", 4, "B", "## Step 1: Understand the problem\nWe need the number of moles.\n\n## Step 2: "
     "Compute\n$n = 22/44 = 0.5$ mol.\n\nThe final answer is: $\\boxed{B}$"),
    ("llama", "stop", 4, "C", "## Step 1: Recall the definition\nA conjugate base is what remains after an "
     "acid donates a proton.\n\n## Step 2: Apply\nThe conjugate base of HSO4- is SO4^2-.\n\nThe final answer "
     "is: $\\boxed{C}$"),
    ("llama", "stop", 10, "E", "The correct answer is E. The photoelectric effect demonstrates the particle "
     "nature of light."),
    ("llama", "stop", 4, "A", "I'm going to go with (A) because it's the only option where the units work "
     "out.\n\nThe answer is (A)."),
    ("llama", "stop", 4, None, "I'm not able to determine the answer from the information given. Could you "
     "provide the missing value of the resistance?"),
    ("llama", "stop", 4, "D", "The best answer is D."),
    ("llama", "stop", 4, "B", "## Step 1: Analyze option A\nOption A would be correct for an isothermal "
     "process, but this one is adiabatic.\n\n## Step 2: Analyze option B\nFor an adiabatic process, $PV^"
     "\\gamma$ is constant.\n\nThe final answer is: $\\boxed{B}$"),
    ("llama", "length", 4, None, "## Step 1: Identify the given information\nThe mass is 2 kg, the spring "
     "constant is 50 N/m.\n\n## Step 2: Compute the period\n$T = 2\\pi\\sqrt{m/k} = 2\\pi\\sqrt{0.04} = "
     "2\\pi(0.2) = 1.26$ s.\n\n## Step 3: Compare with the options\nOption (A) is 0.63 s, option (B) is"),
    ("llama", "stop", 10, "G", "The answer is G) 4.5 eV"),
    ("llama", "stop", 4, "C", "Answer: (c) Vitamin B12 deficiency"),
    ("llama", "stop", 4, None, "The question seems to have an error, as none of the options is correct. The "
     "closest would be (B), but it is still off by a factor of two."),
    ("llama", "stop", 4, "A", "The correct answer is A) Increased heart rate."),
    ("llama", "stop", 10, "D", "The final answer is D."),
    ("llama", "length", 10, None, "To find the equilibrium constant, we first write the expression: K = "
     "[C]^2 / ([A][B]). Plugging in: K = (0.4)^2 / (0.2 * 0.1) = 0.16 / 0.02 = 8. Hmm, 8 is option (E)? "
     "Wait, let me re-check the concentrations, they were given in mmol, so"),
    ("llama", "stop", 4, "B", "Option B is correct. The other options describe prokaryotic features."),
    ("llama", "stop", 4, "D", "The final answer is $\\boxed{(D)}$."),
    # --- Mistral ---
    ("mistral", "stop", 4, "B", " The answer is (B). In a parallel circuit the voltage across each branch is "
     "the same."),
    ("mistral", "stop", 4, "A", " A) The mitochondria\n\nThe answer is A) The mitochondria, which produce "
     "ATP "
     "through oxidative phosphorylation."),
    ("mistral", "stop", 10, "H", " The correct answer is (H). The other options either ignore the "
     "reflection or double-count the phase shift."),
    ("mistral", "stop", 4, None, " Based on the given information, it is not possible to determine the "
     "correct answer with certainty."),
    ("mistral", "stop", 4, "C", " The answer is C, because the half-life does not depend on the initial "
     "amount."),
    ("mistral", "length", 4, None, " To solve this, let's first find the acceleration: a = F/m = 10/2 = 5 "
     "m/s^2. Then the distance after 3 s is d = 1/2 a t^2 = 1/2 * 5 * 9 = 22.5 m. Looking at the options,"),
    ("mistral", "stop", 4, "D", " Answer: D. The sum of the angles of a quadrilateral is 360 degrees."),
    ("mistral", "stop", 10, "A", " The correct option is (A). Note that (C) would be the answer if the "
     "collision were elastic."),
    ("mistral", "stop", 4, "B", " (B) is the correct answer."),
    ("mistral", "stop", 4, None, " (A) is wrong because it ignores friction, and (C) is wrong for the same "
     "reason."),
    ("mistral", "stop", 4, "C", " I would say the answer is (B)... Actually, no. On reflection, the answer "
     "is (C)."),
    ("mistral", "stop", 10, "J", " The answer is J."),
    ("mistral", "length", 4, None, " Let's consider each option:\n\nA) This is incorrect because the rate "
     "constant depends on temperature.\nB) This could be correct if the reaction is"),
    ("mistral", "stop", 4, "A", " The correct answer is:\n\nA) 6.02 × 10^23"),
    # --- Gemma ---
    ("gemma", "stop", 4, "B", "**B) Ribosome**\n\nRibosomes are the site of protein synthesis. "
     "\n\n**Answer:** "
     "**B**"),
    ("gemma", "stop", 4, "D", "The answer is **(D)**.\n\nHere's why:\n\n* **(A)** is incorrect because ..."
     "\n* **(B)** is incorrect because ...\n* **(C)** is incorrect because ..."),
    ("gemma", "stop", 10, "C", "Here's how to solve this:\n\n1. **Find the moles:** 18 g / 18 g/mol = 1 mol\n"
     "2. **Multiply by Avogadro:** 6.02 x 10^23 molecules\n\n**Therefore, the answer is (C).**"),
    ("gemma", "stop", 4, None, "This question is tricky! Let's break it down:\n\n* **(A)** seems likely at "
     "first...\n* **(D)** is also a strong contender.\n\nI need more context to choose between them."),
    ("gemma", "stop", 4, "A", "The correct answer is **(A) Increased cardiac output**.\n\nLet me know if you "
     "have any other questions!"),
    ("gemma", "length", 4, None, "Let's analyze this step-by-step:\n\n1. **Identify the forces:** gravity "
     "and the normal force.\n2. **Resolve gravity:** the component along the incline is $mg\\sin\\theta$.\n"
     "3. **Compare with the options:** (B) uses $\\cos\\theta$, which"),
    ("gemma", "stop", 10, "F", "**Answer: (F)**\n\n**Explanation:** The wavelength is $\\lambda = h/p$. If "
     "the mass doubled, the answer would be (E)."),
    ("gemma", "stop", 4, "C", "The answer is (C). \n\nI hope this helps!"),
    ("gemma", "stop", 4, "B", "**The answer is (B).**\n\n**Explanation:**\n\n* Photosynthesis converts light "
     "energy into chemical energy."),
    ("gemma", "stop", 4, None, "**Answer:** It depends on whether the process is reversible. If reversible, "
     "(A); if irreversible, (C)."),
    ("gemma", "stop", 10, "D", "The correct answer is **D**. \n\n**Explanation:** ..."),
    ("gemma", "length", 4, "A", "**Answer: A**\n\n**Explanation:**\n\n* The question describes a classic "
     "presentation of appendicitis: periumbilical pain migrating to the right lower quadrant.\n* "
     "**McBurney's"),
    # --- look-alikes, negations, self-corrections ---
    ("qwen", "stop", 4, "B", "The answer is (В)."),
    ("llama", "stop", 4, "C", "The answer is not (A); it is (C)."),
    ("gemma", "stop", 4, "B", "The answer is (A). Wait, I misread the units. The answer is (B)."),
    ("mistral", "stop", 4, None, "Maybe the answer is (D)?"),
    ("qwen", "stop", 4, None, "If we assume ideal behaviour, the answer would be (C); but the gas is real."),
    ("llama", "stop", 10, "B", "Answer: B"),
    ("gemma", "stop", 4, "D", "Final answer: (D)"),
    ("mistral", "stop", 4, "A", " Ans. is 'a' i.e., Tetracycline"),
    ("qwen", "stop", 4, "C", "The correct choice is (C)."),
    (R1, "stop", 4, "D", "So the answer is (D).\n</think>\n\nThe answer is (D)."),
    (R1, "stop", 4, None, "So it's either A or C.\n</think>\n\nI cannot determine which of (A) or (C) is "
     "intended."),
]
