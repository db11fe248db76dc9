"""Answer extraction: the choice letter or math expression a model's reply states as its answer.

Models state answers in many ways ("So the answer should be (B).", "**Answer:** **B**", "Option B is
correct.", "Ans. is 'c'", ``$(C)$``, ``\\textbf{(B)}``, ``\\boxed{\\text{C}}``), reasoning models after a
``<think>`` block full of trial answers. The rules, in order:

- The reply after its last end-of-thinking tag is read first; markdown emphasis and LaTeX text wrappers
  are removed so that every style reads as plain text.
- Multiple choice: the last explicit statement wins (an answer phrase followed by the letter, a boxed
  letter, "option X is correct", "X is the correct answer"). A letter is never read out of a word, a
  lowercase letter only where delimited ("(b)", "'c'"), and the pronoun-like "A" and "I" only when nothing
  but punctuation follows ("The answer is I think (C)" reads C). A negated statement ("not (A)") states
  nothing. Failing all that: a reply that is just the letter, or the last parenthesized letter of the last
  line ("it is (B)."). The reasoning itself is never searched for a letter: its trial answers misread.
- Math: the last complete ``\\boxed{}`` of the final text; else math-verify's own extraction from the final
  text ("The answer is 204."), like the reference implementation; else the last box inside the reasoning.
  Thousands separators are dropped ("1,234" is 1234).
"""

from __future__ import annotations

import re

_WRAPPERS = re.compile(r"\\(?:textbf|text|mathrm|mathbf|textit|emph)\s*\{([^{}]*)\}")
_EMPHASIS = re.compile(r"\*\*|__|\$|\\\(|\\\)|\\\[|\\\]|`")
# The letter after an answer phrase: "(b)", "'c'", or a capital not followed by a letter or digit.
_LETTER = r"""(?:\(\s*(?P<p>[A-Ja-j])\s*\)|['"‘“](?P<q>[A-Ja-j])['"’”]|(?P<b>[A-J])(?![A-Za-z0-9]))"""
_PHRASE = (  # case-insensitive words; the letters after them are matched case-sensitively
    r"(?i:\b(?:final\s+|correct\s+|right\s+|best\s+)?answer\s*(?:is|should\s+be|would\s+be|must\s+be|will\s+be)?"
    r"\s*[:=\-–—]?"
    r"|\b(?:correct|right|best)\s+(?:option|choice)\s*(?:is|[:=\-–—])?"
    r"|\bans\.?\s*(?:is|[:=\-–—])?"
    r"|\b(?:i\s+(?:choose|pick|select)|i\s+will\s+go\s+with|the\s+choice\s+is))"
)
_STATEMENT = re.compile(_PHRASE + r"\s*(?:(?i:option|choice)\s*)?" + _LETTER)
_IS_CORRECT = re.compile(
    r"(?:(?i:\b(?:option|choice))\s*" + _LETTER + r"|(?<![A-Za-z])\((?P<p2>[A-J])\))"
    r"\s+(?i:is\s+(?:the\s+)?(?:correct|right|best))\b"
    r"|(?<![A-Za-z(])(?P<b2>[A-J])\s+(?i:is\s+the\s+(?:correct|right|best)\s+(?:answer|option|choice))\b"
)
_BOXED_LETTER = re.compile(r"\\boxed\s*\{\s*\(?\s*([A-Ja-j])\s*\)?\s*\}")
_LONE_LETTER = re.compile(r"^\(?([A-J])\)?[.)]?$")
_PAREN_LETTER = re.compile(r"\(([A-J])\)")
_NEGATED = re.compile(r"\bnot\s*$", re.IGNORECASE)
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")


def split_reasoning(text: str, think_end_tag: str = "</think>") -> tuple[str, str]:
    """(reasoning, final text): the reply before and after its last end-of-thinking tag."""
    if think_end_tag and think_end_tag in text:
        reasoning, final = text.rsplit(think_end_tag, 1)
        return reasoning, final.strip()
    return "", text.strip()


def plain(text: str) -> str:
    """Markdown emphasis and LaTeX text wrappers removed: ``**B**``, ``$(C)$``, ``\\textbf{(B)}`` read as B, (C), (B)."""
    for _ in range(2):  # \\textbf{\\text{B}}
        text = _WRAPPERS.sub(r"\1", text)
    return _EMPHASIS.sub("", text)


def _letter_of(match: re.Match) -> str | None:
    found = {k: v for k, v in match.groupdict().items() if v}
    for key in ("p", "q", "p2"):
        if key in found:
            return found[key].upper()
    letter = found.get("b") or found.get("b2")
    if letter in ("A", "I"):  # "the answer is I think", "the answer is A prime": words, not letters
        rest = match.string[match.end():]
        if not re.match(r"\s*(?:[.,;:!)\]]|$)", rest):
            return None
    return letter


def _statements(text: str) -> list[tuple[int, str]]:
    """(position, letter) of every explicit answer statement in ``text``."""
    found = []
    for pattern in (_STATEMENT, _IS_CORRECT):
        for match in pattern.finditer(text):
            if _NEGATED.search(text[max(0, match.start() - 8) : match.start()]):
                continue
            letter = _letter_of(match)
            if letter:
                found.append((match.start(), letter))
    found += [(m.start(), m.group(1).upper()) for m in _BOXED_LETTER.finditer(text)]
    return found


def extract_choice(text: str, letters: str) -> str | None:
    """The choice letter a reply states as its answer (among ``letters``), or None."""
    final = plain(text)
    stated = [(pos, letter) for pos, letter in _statements(final) if letter in letters]
    if stated:
        return max(stated)[1]
    lines = [line.strip() for line in final.splitlines() if line.strip()]
    lone = _LONE_LETTER.match(lines[-1]) if lines else None  # the reply, or its last line, is just the letter
    if lone and lone.group(1) in letters:
        return lone.group(1)
    if lines and not re.match(r"^\(?[A-J]\)", lines[-1]):  # an echoed option line states nothing
        last = [m.group(1) for m in _PAREN_LETTER.finditer(lines[-1]) if m.group(1) in letters]
        if last:
            return last[-1]
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last complete \\boxed{...} (or \\fbox{...}), with nested braces balanced."""
    starts = sorted(m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text))
    for begin in reversed(starts):
        depth, pos = 1, begin
        while pos < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[pos], 0)
            pos += 1
        if depth == 0:
            return normalize_number(text[begin : pos - 1].strip())
    return None


def normalize_number(expr: str) -> str:
    """"1,234" and "1\\,234" as 1234; anything else unchanged."""
    compact = expr.replace("\\,", ",").replace("{,}", ",")
    return compact.replace(",", "") if _THOUSANDS.match(compact) else expr


def extract_math(text: str, think_end_tag: str = "</think>") -> str | None:
    """A math reply's answer: the final text's last box, else math-verify's reading of it, else the reasoning's box."""
    reasoning, final = split_reasoning(text, think_end_tag)
    boxed = extract_boxed(final)
    if boxed is not None:
        return boxed
    if final:
        from math_verify import parse

        try:
            parsed = parse(final)
        except Exception:  # math-verify may fail on odd text: then it found nothing
            parsed = []
        if len(parsed) >= 2 and isinstance(parsed[1], str) and parsed[1].strip():
            return normalize_number(parsed[1].strip().rstrip(".").strip())
    return extract_boxed(reasoning) if reasoning else None
