"""The paper protocol's prompts (``prompts: paper``): the reference implementation's structure and
output-format contracts, in the project's own wording.

Structure, as in github dinobby/Symbolic-MoE: one user turn and no system prompt for every model; the
keyword model ends its reply with a "Keywords: k1, k2" line; experts end with "The answer is (X)" (choice)
or "The answer is \\boxed{X}" (math); the aggregator gets a Mixture-of-Agents-style synthesis instruction,
then the numbered model responses ("### Model 1's response:", reasoning before the end-of-thinking tag
removed), then the question and the answer format. Only those format contracts are the reference's;
the sentences around them are the project's. The project's own prompts (``prompts: project``) are in
:mod:`skillmoe_ray.method.skills` and :mod:`skillmoe_ray.method.aggregate`.
"""

from __future__ import annotations

from collections.abc import Sequence

from skillmoe_ray.data.instances import CHOICE, Instance

KEYWORD_REQUEST = (
    "Which subjects, knowledge areas or skills does a solver need for this question? Name 2 to 5 of them, "
    "a few words each (for instance: virology, contract law, number theory), separated by commas, and "
    "nothing else. Reply in this format: Keywords: <keyword1>, <keyword2>, ..."
)
SYNTHESIS = (
    "Below are responses of several models to the question that follows. Combine them into one answer of "
    "your own: weigh each response critically, since some may be wrong or biased, keep what is right, and "
    "do not just copy one of them. Write a clear, accurate solution.\n\nResponses from models:\n\n"
)


def answer_format(inst: Instance) -> str:
    """The reference's output-format contract, by answer type."""
    if inst.answer_type == CHOICE:
        return ('Reason step by step, then end your reply with "The answer is (X)", where X is the capital '
                "letter of the correct option.")
    return ('Reason step by step, then end your reply with "The answer is \\boxed{X}", where X is the '
            "final answer.")


def user_turn(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def keyword_messages(question: str) -> list[dict]:
    """Ask for the question's skills, in the "Keywords:" line format."""
    return user_turn(f"Question: {question}\n{KEYWORD_REQUEST}")


def expert_messages(inst: Instance, question: str) -> list[dict]:
    """An expert's answer request: the question, then the format contract."""
    return user_turn(f"Question: {question}\n{answer_format(inst)}")


def aggregator_messages(inst: Instance, question: str, responses: Sequence[str]) -> list[dict]:
    """The synthesis request.

    The instruction, the numbered responses (already without reasoning), the question.
    """
    blocks = "".join(f"### Model {i}'s response:\n{r}\n\n" for i, r in enumerate(responses, 1))
    return user_turn(f"{SYNTHESIS}{blocks}Question: {question}\n{answer_format(inst)}")
