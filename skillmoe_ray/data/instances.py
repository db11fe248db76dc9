"""The Instance record every stage works on, and answer-type rules."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

CHOICE = "choice"
MATH = "math"
ANSWER_TYPES = (CHOICE, MATH)
LETTERS = string.ascii_uppercase[:10]  # A..J: MMLU-Pro has up to ten options

_INLINE_OPTION = re.compile(r"\(([A-J])\)")


def invalid_text(value: object, name: str) -> str | None:
    """Where in ``value`` (a JSON value called ``name``) a string is not valid Unicode text, or None.

    JSON's ``\\ud800`` escape decodes to a lone UTF-16 surrogate: valid JSON, but no tokenizer takes it, so
    one such string would fail its whole engine batch. Found here, it is refused at the boundary.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (f"{name}: character {exc.start} is the lone surrogate {value[exc.start]!r}, "
                    "not valid Unicode text")
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = invalid_text(item, f"{name}.{key}" if isinstance(key, str) else f"{name}[{key}]")
        if found:
            return found
    return None


@dataclass(frozen=True)
class Instance:
    """One question with its gold answer.

    ``gold`` is always a string: a choice letter, or a math expression kept exactly as written
    (an integer gold answer read back as ``int`` would break math equivalence checks).
    ``choices`` is None when the options are written inside the question text, as in the
    original research code's files ("The options are: (A) ... (B) ...").
    """

    id: str
    task: str
    question: str
    gold: str
    answer_type: str
    choices: tuple[str, ...] | None = None
    subject: str | None = None

    def valid_letters(self) -> str:
        """Letters a choice answer may take: one per option, A..J when options are unknown."""
        if self.choices:
            return LETTERS[: len(self.choices)]
        inline = sorted(set(_INLINE_OPTION.findall(self.question)))
        return "".join(inline) if inline else LETTERS

    def to_dict(self) -> dict:
        """Plain-JSON form, for artifacts."""
        return {
            "id": self.id,
            "task": self.task,
            "question": self.question,
            "gold": self.gold,
            "answer_type": self.answer_type,
            "choices": list(self.choices) if self.choices else None,
            "subject": self.subject,
        }


def infer_answer_type(gold: str, has_choices: bool) -> str:
    """Choice when the instance has options or its gold is a lone letter A..J; math otherwise."""
    if has_choices or (len(gold) == 1 and gold in LETTERS):
        return CHOICE
    return MATH


def format_choices(choices: tuple[str, ...]) -> str:
    """Render options as "(A) ...", one per line, for prompts."""
    return "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))
