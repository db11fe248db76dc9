"""Skill annotation (DESIGN section 3, step 2): parsing, vote filtering, vocabulary, mapping."""

from __future__ import annotations

import numpy as np

from skillmoe_ray.data.instances import CHOICE, Instance
from skillmoe_ray.method.skills import (
    KEYWORD_SYSTEM,
    build_vocabulary,
    keyword_messages,
    map_instance_skills,
    map_keywords,
    nearest_neighbours,
    normalize_keyword,
    parse_keywords,
    vote_keywords,
)

INST = Instance("q1", "t", "What is 2+2?", "B", CHOICE, choices=("3", "4"))


# --- normalize_keyword -------------------------------------------------------------------------


def test_normalize_lowercases():
    """Keywords are lowercased."""
    assert normalize_keyword("Organic Chemistry") == "organic chemistry"


def test_normalize_strips_punctuation():
    """Punctuation is removed (no punctuation character survives)."""
    assert normalize_keyword("**Cardiology.**") == "cardiology"
    assert normalize_keyword('"Number theory!"') == "number theory"


def test_normalize_collapses_whitespace():
    """Runs of whitespace become one space; leading/trailing whitespace goes."""
    assert normalize_keyword("  modular \t  arithmetic \n") == "modular arithmetic"


# --- parse_keywords ------------------------------------------------------------------------------


def test_parse_uses_last_skills_line():
    """When several "Skills:" lines exist, the last one is used."""
    text = "Skills: draft one, draft two\nThinking more...\nSkills: Genetics, Probability\nThanks."
    assert parse_keywords(text) == ["genetics", "probability"]


def test_parse_falls_back_to_last_nonempty_line():
    """Without a "Skills:" line, the last non-empty line is read."""
    text = "Some preamble\nalgebra, geometry\n\n   \n"
    assert parse_keywords(text) == ["algebra", "geometry"]


def test_parse_splits_on_commas_and_semicolons():
    """Items are split on both commas and semicolons."""
    assert parse_keywords("Skills: a b; c d, e f") == ["a b", "c d", "e f"]


def test_parse_max_chars_boundary():
    """A keyword of exactly max_chars=20 characters is kept; one of 21 is dropped."""
    k20, k21 = "a" * 20, "b" * 21
    assert parse_keywords(f"Skills: {k20}, {k21}, short") == [k20, "short"]


def test_parse_length_is_measured_after_normalization():
    """Length applies to the normalized keyword (punctuation/whitespace do not count)."""
    raw = "**" + "x" * 20 + "**"
    assert parse_keywords(f"Skills: {raw}") == ["x" * 20]


def test_parse_removes_duplicates_keeping_first_order():
    """A keyword repeated in one reply (after normalization) appears once, at its first position."""
    assert parse_keywords("Skills: Algebra, calculus, ALGEBRA., calculus") == ["algebra", "calculus"]


def test_parse_empty_reply():
    """An empty reply gives no keywords."""
    assert parse_keywords("  \n\n ") == []


# --- vote_keywords -------------------------------------------------------------------------------


def test_vote_keeps_keywords_with_min_votes():
    """Kept iff produced in at least min_votes of the samples."""
    samples = [["a", "b"], ["a", "c"], ["b", "d"], ["a"], ["e"]]
    assert set(vote_keywords(samples, min_votes=2)) == {"a", "b"}
    assert vote_keywords(samples, min_votes=3) == ["a"]


def test_vote_repeat_within_one_sample_counts_once():
    """A keyword repeated inside ONE sample is one vote, not several."""
    samples = [["x", "x", "x"], ["y"], ["y"]]
    assert vote_keywords(samples, min_votes=2) == ["y"]


def test_vote_orders_by_votes_then_first_appearance():
    """Most-voted first; ties keep the order of first appearance."""
    samples = [["p", "r", "q"], ["q", "r"], ["q", "p"], ["s", "r"]]
    # votes: p=2, r=3, q=3, s=1; r appeared before q (not alphabetical order).
    assert vote_keywords(samples, min_votes=2) == ["r", "q", "p"]


# --- build_vocabulary ----------------------------------------------------------------------------


def test_build_vocabulary_union_sorted_unique():
    """The vocabulary is every kept validation keyword, once, sorted."""
    vocab = build_vocabulary({"v1": ["genetics", "algebra"], "v2": ["algebra", "optics"], "v3": []})
    assert vocab == ["algebra", "genetics", "optics"]


# --- nearest_neighbours --------------------------------------------------------------------------


def test_nearest_neighbours_uses_cosine_not_dot_product():
    """A long vocabulary vector with a worse angle must not win over a short, aligned one."""
    vocab = np.array([[10.0, 10.0], [0.1, 0.0]])  # row 0: large norm, 45 degrees; row 1: tiny, aligned
    queries = np.array([[1.0, 0.0], [0.0, 3.0]])
    # dot product would pick row 0 for the first query; cosine picks row 1.
    assert list(nearest_neighbours(queries, vocab)) == [1, 0]


def test_nearest_neighbours_ignores_query_norm():
    """Scaling a query does not change its neighbour."""
    vocab = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    q = np.array([[0.2, 1.0]])
    assert nearest_neighbours(q, vocab)[0] == nearest_neighbours(q * 50, vocab)[0] == 1


# --- map_keywords / map_instance_skills ----------------------------------------------------------

VECS = {
    "genetics": [1.0, 0.0, 0.0],
    "algebra": [0.0, 1.0, 0.0],
    "optics": [0.0, 0.0, 1.0],
    "heredity": [5.0, 0.5, 0.0],  # near genetics
    "linear equations": [0.1, 0.3, 0.0],  # near algebra (small norm)
    "lenses": [0.0, 2.0, 4.0],  # near optics
}


class FakeEmbedder:
    """Maps words to hand-made vectors and records every call."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, texts):
        self.calls.append(list(texts))
        return np.array([VECS[t] for t in texts])


def test_map_keywords_identity_and_nearest():
    """Vocabulary keywords map to themselves; others to their most cosine-similar skill."""
    embed = FakeEmbedder()
    vocab = ["algebra", "genetics", "optics"]
    mapping = map_keywords(["genetics", "heredity", "linear equations", "lenses"], vocab, embed)
    assert mapping == {
        "genetics": "genetics",
        "heredity": "genetics",
        "linear equations": "algebra",
        "lenses": "optics",
    }
    assert embed.calls, "unknown keywords must be embedded"


def test_map_keywords_does_not_embed_when_all_known():
    """When every keyword is already in the vocabulary, the embedder is never called."""
    embed = FakeEmbedder()
    mapping = map_keywords(["optics", "algebra"], ["algebra", "genetics", "optics"], embed)
    assert mapping == {"optics": "optics", "algebra": "algebra"}
    assert embed.calls == []


def test_map_instance_skills_dedups_and_keeps_order():
    """Test skills become vocabulary skills, in order, without repeats; unmapped ones are dropped."""
    mapping = {"heredity": "genetics", "genetics": "genetics", "lenses": "optics", "algebra": "algebra"}
    out = map_instance_skills(
        {"t1": ["lenses", "heredity", "genetics", "algebra"], "t2": ["unknown", "heredity"], "t3": []},
        mapping,
    )
    assert out == {"t1": ["optics", "genetics", "algebra"], "t2": ["genetics"], "t3": []}


# --- keyword_messages ----------------------------------------------------------------------------


def test_keyword_messages_system_and_user():
    """With a system role: exactly one system and one user message, the question in the user turn."""
    msgs = keyword_messages(INST)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[0]["content"] == KEYWORD_SYSTEM
    assert "What is 2+2?" in msgs[1]["content"]
    assert "Skills:" in msgs[1]["content"]


def test_keyword_messages_without_system_role():
    """system_role=False folds the system text into a single user message."""
    msgs = keyword_messages(INST, system_role=False)
    assert len(msgs) == 1
    assert msgs[0]["role"] == "user"
    assert KEYWORD_SYSTEM in msgs[0]["content"]
    assert "What is 2+2?" in msgs[0]["content"]


def test_parse_keywords_reads_items_listed_under_an_empty_skills_line():
    """Replies that put one skill per line under "Skills:" are read too."""
    assert parse_keywords("Skills:\n- organic chemistry\n- stoichiometry") == ["organic chemistry",
                                                                               "stoichiometry"]


def test_repeated_mapped_skills_count_once_or_once_per_keyword():
    """Two keywords that map to one validation skill: once (today's rule) or twice (the reference's)."""
    mapping = {
        "organic chem": "organic chemistry",
        "organic chemistry": "organic chemistry",
        "acids": "acid base",
    }
    test = {"q": ["organic chem", "organic chemistry", "acids"]}
    assert map_instance_skills(test, mapping) == {"q": ["organic chemistry", "acid base"]}
    assert map_instance_skills(test, mapping, repeats=True) == {
        "q": ["organic chemistry", "organic chemistry", "acid base"]
    }


def test_counting_repeats_changes_recruitment_as_multiplicity_would():
    from skillmoe_ray.method.recruit import local_scores

    profiles = {
        "m1": {"organic chemistry": 2, "acid base": -3},
        "m2": {"organic chemistry": -1, "acid base": 2},
    }
    assert local_scores(profiles, ["organic chemistry", "acid base"]) == {"m1": -1, "m2": 1}
    assert local_scores(profiles, ["organic chemistry", "organic chemistry", "acid base"]) == {
        "m1": 1,
        "m2": 0,
    }
