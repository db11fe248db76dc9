"""Answer extraction: the choice letter or math expression a model's reply commits to as its answer.

Models state answers in many ways ("So the answer should be (B).", "**Answer:** **B**", "Option B is
correct.", "Ans. is 'c'", ``$(C)$``, ``\\textbf{(B)}``, ``\\boxed{\\text{C}}``), reasoning models after a
``<think>`` block full of trial answers. A misread is worse than a miss (it turns a wrong answer into a
right one, or the reverse, and no one sees it), so extraction abstains unless an answer is committed.
The rules, in order:

- Look-alike characters are normalized first: the Unicode minus and dashes read as ``-``, full-width
  letters, digits and brackets as ASCII, Cyrillic and Greek capitals that look like A-J as those letters.
- **Cut or unclosed: no answer, with one exception.** A reply whose reasoning block opens and never closes
  has no answer. A reply cut by ``max_tokens`` (the engine's ``finish_reason`` ``"length"``) has no answer
  unless, after its closed reasoning block (or in the whole reply when it has none), a *final-answer
  statement* stands complete before the cut: a complete ``\\boxed{}``, a "final answer" phrase, or a line
  starting "Answer:", followed by the end of its sentence, with nothing after it that reconsiders (wait,
  hmm, actually, but, maybe, perhaps, let me, double-check, reconsider, a question mark).
- The reply after its last end-of-thinking tag is read; markdown emphasis and LaTeX text wrappers are
  removed so that every style reads as plain text.
- Multiple choice: the last *committed* statement wins (an answer phrase followed by the letter, a boxed
  letter, "option X is correct", "X is the correct answer"). Not committed, so never read: a hypothetical
  ("would be B", "if ..., the answer is B", "maybe the answer is (B)?"), a negated statement ("not (A)",
  "not A but C" states nothing about A). A letter is never read out of a word, a lowercase letter only
  where delimited ("(b)", "'c'"), and the pronoun-like "A" and "I" only when nothing but punctuation follows
  ("The answer is I think (C)" reads C). Failing all that: a reply that is just the letter, or the one
  parenthesized letter of a plain last line ("it is (B).") that neither negates, hedges nor asks. The
  reasoning itself is never searched for a letter: its trial answers misread.
- Math: an unfinished ``\\boxed{`` after the last complete one means the reply was still writing its
  answer: no answer. Else the last complete ``\\boxed{}`` of the final text; else a number word for a
  small integer in its last sentence ("The answer is twelve.", "so there are two vertical asymptotes");
  else math-verify's own extraction from the final text ("The answer is 204."), like the reference
  implementation; else the last box inside a closed reasoning block. Thousands separators are dropped
  ("1,234" is 1234).
"""

from __future__ import annotations

import re

_LOOKALIKES = {
    **{ord(c): "-" for c in "\u2212\u2012\u2013\u2014\u2010\u2011\ufe63\uff0d"},
    **{0xFF01 + i: chr(0x21 + i) for i in range(0x5E)},  # full-width ASCII
    0x00A0: " ", 0x3000: " ",
}
# Cyrillic and Greek capitals that look like the option letters A-J (choice replies only).
_LETTER_LOOKALIKES = str.maketrans("АВСЕНІЈΑΒΕΗΙ", "ABCEHIJABEHI")
_WRAPPERS = re.compile(r"\\(?:textbf|text|mathrm|mathbf|textit|emph)\s*\{([^{}]*)\}")
_EMPHASIS = re.compile(r"\*\*|__|\$|\\\(|\\\)|\\\[|\\\]|`")
# The letter after an answer phrase: "(b)", "'c'", or a capital not followed by a letter or digit.
_LETTER = r"""(?:\(\s*(?P<p>[A-Ja-j])\s*\)|['"‘“](?P<q>[A-Ja-j])['"’”]|(?P<b>[A-J])(?![A-Za-z0-9]))"""
_PHRASE = (  # case-insensitive words; the letters after them are matched case-sensitively
    r"(?i:\b(?:final\s+|correct\s+|right\s+|best\s+)?answer\s*(?:is|should\s+be|must\s+be|will\s+be)?"
    r"\s*[:=\-]?"
    r"|\b(?:correct|right|best)\s+(?:option|choice)\s*(?:is|[:=\-])?"
    r"|\bans\.?\s*(?:is|[:=\-])?"
    r"|\b(?:i\s+(?:choose|pick|select)|i\s+will\s+go\s+with|the\s+choice\s+is))"
)
_STATEMENT = re.compile(_PHRASE + r"\s*(?:(?i:option|choice)\s*)?" + _LETTER)
_IS_CORRECT = re.compile(
    r"(?:(?i:\b(?:option|choice))\s*" + _LETTER + r"|(?<![A-Za-z])\((?P<p2>[A-J])\))"
    r"\s+(?i:is\s+(?:the\s+)?(?:correct|right|best))\b"
    r"|(?<![A-Za-z(])(?P<b2>[A-J])\s+(?i:is\s+the\s+(?:correct|right|best)\s+(?:answer|option|choice))\b"
)
# "not (A) but (C)", "not (B); it is (A)": the letter after the contrast is stated.
_CONTRAST = re.compile(
    r"(?i:\bnot\s+(?:option\s+)?(?:\(\s*[a-j]\s*\)|[a-j]))\s*[;,]?\s*(?i:but|it\s+is|it's|rather)\s+"
    r"(?:(?i:option)\s*)?" + _LETTER)
_BOXED_LETTER = re.compile(r"\\boxed\s*\{\s*\(?\s*([A-Ja-j])\s*\)?\s*\}")
_LONE_LETTER = re.compile(r"^\(?([A-J])\)?[.)]?$")
_PAREN_LETTER = re.compile(r"\(([A-J])\)")
_NEGATED = re.compile(r"\bnot\s*$", re.IGNORECASE)
# Before a statement in its sentence: it is a supposition, not a commitment.
_HYPOTHETICAL = re.compile(
    r"\b(?:if|maybe|perhaps|possibly|suppose|supposing|assuming|unless|whether|could|might|would)\b",
    re.IGNORECASE)
_QUESTION_AFTER = re.compile(r"^[^.!\n]*\?")
_RECONSIDER = re.compile(
    r"\?|\b(?:wait|hmm+|actually|but|maybe|perhaps|let me|let's|double[- ]check|re-?check|reconsider|"
    r"no,|alternatively|on second thought)\b", re.IGNORECASE)
_PLAIN_LINE_STOP = re.compile(
    r"\?|\b(?:not|none|neither|nor|no|wrong|incorrect|if|would|could|might|maybe|perhaps|between|or)\b",
    re.IGNORECASE)
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
NUMBER_WORDS = {w: i for i, w in enumerate(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
     "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"])}
_NUMBER_WORD = re.compile(
    r"\b(?:answer\s+is|there\s+(?:are|is)|has|have|gives?|makes?|total\s+of|exactly|equals?)\s+"
    r"(?:exactly\s+)?"
    r"(" + "|".join(NUMBER_WORDS) + r")\b", re.IGNORECASE)
_FINAL_STATEMENT = re.compile(r"(?i:final\s+answer)|^\s*(?i:answer)\s*[:\-]", re.MULTILINE)
CUT = "length"


def normalize(text: str, letters: bool = False) -> str:
    """``text`` with look-alike characters as ASCII: minus signs and dashes, full-width forms, and (for
    ``letters``) Cyrillic and Greek capitals that look like option letters."""
    text = text.translate(_LOOKALIKES)
    return text.translate(_LETTER_LOOKALIKES) if letters else text


def open_tag(think_end_tag: str) -> str:
    """The tag that opens the reasoning block closed by ``think_end_tag`` (``</think>`` -> ``<think>``)."""
    return think_end_tag.replace("</", "<", 1) if think_end_tag.startswith("</") else ""


def unclosed(text: str, think_end_tag: str = "</think>") -> bool:
    """Whether the reply opens a reasoning block after its last end-of-thinking tag (it never closed)."""
    start = open_tag(think_end_tag)
    if not think_end_tag or not start or start not in text:
        return False
    return text.rfind(start) > text.rfind(think_end_tag)


def split_reasoning(text: str, think_end_tag: str = "</think>") -> tuple[str, str]:
    """(reasoning, final text): the reply before and after its last end-of-thinking tag."""
    if think_end_tag and think_end_tag in text:
        reasoning, final = text.rsplit(think_end_tag, 1)
        return reasoning, final.strip()
    return "", text.strip()


def plain(text: str) -> str:
    """Markdown emphasis and LaTeX text wrappers removed: ``**B**``, ``$(C)$``, ``\\textbf{(B)}`` read as B,
    (C), (B)."""
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
        if not re.match(r"[ \t]*(?:[.,;:!)\]]|\n|$)", rest):
            return None
    return letter


def _sentence_before(text: str, pos: int) -> str:
    """The part of ``pos``'s sentence before it (after the last sentence end or line break)."""
    head = text[:pos]
    cut = max(head.rfind(". "), head.rfind("\n"), head.rfind("! "), head.rfind("; "))
    return head[cut + 1:]


def _committed(text: str, match: re.Match) -> bool:
    """Whether a statement commits: not negated, not hypothetical, not asked."""
    if _NEGATED.search(text[max(0, match.start() - 8): match.start()]):
        return False
    before = _sentence_before(text, match.start()) + text[match.start(): match.end()]
    return not _HYPOTHETICAL.search(before) and not _QUESTION_AFTER.match(text[match.end():])


def _statements(text: str) -> list[tuple[int, int, str]]:
    """(start, end, letter) of every committed answer statement in ``text``."""
    found = []
    for pattern in (_STATEMENT, _IS_CORRECT, _CONTRAST, _BOXED_LETTER):
        for match in pattern.finditer(text):
            letter = match.group(1).upper() if pattern is _BOXED_LETTER else _letter_of(match)
            if letter and _committed(text, match):
                found.append((match.start(), match.end(), letter))
    return found


def _fallback_letter(final: str, letters: str) -> str | None:
    """The reply (or its last line) is just the letter, or its plain last line holds one letter only
    ("it is (B).")."""
    lines = [line.strip() for line in final.splitlines() if line.strip()]
    if not lines:
        return None
    lone = _LONE_LETTER.match(lines[-1])
    if lone and lone.group(1) in letters:
        return lone.group(1)
    if re.match(r"^\(?[A-J]\)", lines[-1]) or _PLAIN_LINE_STOP.search(lines[-1]):
        return None  # an echoed option line, or a line that negates, hedges or asks, states nothing
    found = {m.group(1) for m in _PAREN_LETTER.finditer(lines[-1])}
    return found.pop() if len(found) == 1 and found <= set(letters) else None


def extract_choice(text: str, letters: str, cut: bool = False) -> str | None:
    """The choice letter a reply's final text commits to (among ``letters``), or None.

    ``cut``: the reply was cut by ``max_tokens``; only a final-answer statement with nothing reconsidering
    it after counts (the module's rules)."""
    final = plain(normalize(text, letters=True))
    stated = [(start, end, letter) for start, end, letter in _statements(final) if letter in letters]
    if cut:
        stated = [s for s in stated if _stands_before_cut(final, s[0], s[1])]
        return max(stated)[2] if stated else None
    if stated:
        return max(stated)[2]
    return _fallback_letter(final, letters)


def _stands_before_cut(text: str, start: int, end: int) -> bool:
    """Whether the statement at ``start:end`` is a complete final-answer statement of a cut reply."""
    line_start = text.rfind("\n", 0, start) + 1
    boxed = text[start:end].lstrip().startswith("\\boxed")
    if not boxed and not _FINAL_STATEMENT.search(text[line_start:end]):
        return False
    rest = text[end:]
    complete = boxed or text[end - 1] in ")'\"’”" or re.match(r"[ \t]*(?:[.!\]]|\n)", rest)
    return bool(complete) and not _RECONSIDER.search(rest)


def extract_boxed(text: str) -> str | None:
    """Content of the last complete \\boxed{...} (or \\fbox{...}), with nested braces balanced."""
    span = _last_box(text)
    return None if span is None else normalize_number(text[span[0]: span[1] - 1].strip())


def _last_box(text: str) -> tuple[int, int] | None:
    """(content start, end after the closing brace) of the last complete box."""
    starts = sorted(m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text))
    for begin in reversed(starts):
        depth, pos = 1, begin
        while pos < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[pos], 0)
            pos += 1
        if depth == 0:
            return begin, pos
    return None


def _unfinished_box(text: str) -> bool:
    """Whether a box opens after the last complete one and never closes (the reply was writing it)."""
    opened = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    span = _last_box(text)
    return bool(opened) and (span is None or opened[-1] > span[0])


def normalize_number(expr: str) -> str:
    """"1,234" and "1\\,234" as 1234; anything else unchanged."""
    compact = expr.replace("\\,", ",").replace("{,}", ",")
    return compact.replace(",", "") if _THOUSANDS.match(compact) else expr


def _number_word(final: str) -> str | None:
    """A small integer stated in words in the final text's last sentence ("there are two asymptotes")."""
    sentences = [s for s in re.split(r"(?<=[.!])\s+|\n", final.strip()) if s.strip()]
    found = _NUMBER_WORD.findall(sentences[-1]) if sentences else []
    return str(NUMBER_WORDS[found[-1].lower()]) if found else None


def _math_verify(final: str) -> str | None:
    from math_verify import parse

    try:
        parsed = parse(final)
    except Exception:  # math-verify may fail on odd text: then it found nothing
        parsed = []
    if len(parsed) >= 2 and isinstance(parsed[1], str) and parsed[1].strip():
        return normalize_number(parsed[1].strip().rstrip(".").strip())
    return None


def extract_math(text: str, think_end_tag: str = "</think>", cut: bool = False) -> str | None:
    """A math reply's answer (the module's rules): the final text's last box, else a number word, else
    math-verify's reading of it, else a closed reasoning block's box; ``cut`` as :func:`extract_choice`."""
    reasoning, final = split_reasoning(normalize(text), think_end_tag)
    if _unfinished_box(final):
        return None
    if cut:
        span = _last_box(final)
        if span is None or _RECONSIDER.search(final[span[1]:]):
            return None
        return extract_boxed(final)
    boxed = extract_boxed(final)
    if boxed is not None:
        return boxed
    if final:
        found = _number_word(plain(final)) or _math_verify(final)
        if found is not None:
            return found
    return extract_boxed(reasoning) if reasoning and not _unfinished_box(reasoning) else None


def extract(text: str, letters: str | None, think_end_tag: str = "</think>",
            finish_reason: str = "") -> str | None:
    """The answer a reply commits to: a letter among ``letters`` (a choice question) or a math expression
    (``letters`` None); None when the reply commits to none. ``finish_reason`` is the engine's
    (``"length"``: cut by ``max_tokens``)."""
    if unclosed(text, think_end_tag):
        return None
    cut = finish_reason == CUT
    if letters is not None:
        return extract_choice(split_reasoning(text, think_end_tag)[1], letters, cut)
    return extract_math(text, think_end_tag, cut)
