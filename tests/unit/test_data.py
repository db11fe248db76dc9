"""Data loading (DESIGN section 3, step 1): local files, hub adapters, sampling, val/test split."""

from __future__ import annotations

import json
import sys
import types

import pytest

from skillmoe_ray.config import DataConfig, SplitSpec
from skillmoe_ray.data import CHOICE, MATH, demo_data_path, load_data, sample, sample_per_subject
from skillmoe_ray.data.hub import aime_row, gpqa_row, load_hub, matches, medmcqa_row, mmlu_pro_row
from skillmoe_ray.data.instances import Instance
from skillmoe_ray.data.local import load_local
from skillmoe_ray.errors import DataError

ROWS = [
    {"id": "a", "question": "Q1?", "choices": ["x", "y", "z"], "gold_answer": "B"},
    {"id": "b", "question": "What is 17*12?", "gold_answer": 204},
]


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


# --- local files ---------------------------------------------------------------------------------


def test_jsonl_and_json_array_load_the_same(tmp_path):
    """A JSONL file and a JSON array with the same rows give the same instances."""
    a = load_local(write_jsonl(tmp_path / "d.jsonl", ROWS), "t")
    b_path = tmp_path / "d.json"
    b_path.write_text(json.dumps(ROWS, indent=2))
    b = load_local(b_path, "t")
    assert a == b
    assert [i.id for i in a] == ["a", "b"]
    assert a[0].choices == ("x", "y", "z") and a[0].answer_type == CHOICE


def test_jsonl_missing_gold_names_path_line_field(tmp_path):
    """A row without gold_answer: DataError naming file, line number and field."""
    path = write_jsonl(tmp_path / "d.jsonl", [ROWS[0], ROWS[1], {"question": "no gold"}])
    with pytest.raises(DataError) as err:
        load_local(path, "t")
    msg = str(err.value)
    assert str(path) in msg and ":3" in msg and "gold_answer" in msg


def test_json_array_missing_gold_reports_its_line(tmp_path):
    """In a JSON array the error names the line where the bad row starts."""
    path = tmp_path / "d.json"
    lines = [
        "[",
        '  {"question": "ok 1", "gold_answer": "1"},',
        '  {"question": "ok 2", "gold_answer": "2"},',
        "",
        '  {"question": "bad",',
        '   "id": "x"}',
        "]",
    ]
    path.write_text("\n".join(lines))
    with pytest.raises(DataError) as err:
        load_local(path, "t")
    msg = str(err.value)
    assert f"{path}:5" in msg and "gold_answer" in msg


def test_invalid_json_line_reports_line(tmp_path):
    """A malformed JSONL line: DataError with its line number."""
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n{not json}\n")
    with pytest.raises(DataError, match=r"d\.jsonl:3"):
        load_local(path, "t")


def test_missing_file_names_path(tmp_path):
    """A missing file: DataError naming the path."""
    path = tmp_path / "nowhere.jsonl"
    with pytest.raises(DataError, match="nowhere.jsonl"):
        load_local(path, "t")


def test_integer_gold_becomes_string_math(tmp_path):
    """An integer gold (204) is kept as the string "204", answer type math."""
    inst = load_local(write_jsonl(tmp_path / "d.jsonl", [ROWS[1]]), "t")[0]
    assert inst.gold == "204" and isinstance(inst.gold, str)
    assert inst.answer_type == MATH


def test_lone_letter_gold_with_inline_options_is_choice(tmp_path):
    """A lone-letter gold with the options inside the question text is a choice question."""
    row = {"question": "Pick one. The options are: (A) 1 (B) 2 (C) 3", "gold_answer": "C"}
    inst = load_local(write_jsonl(tmp_path / "d.jsonl", [row]), "t")[0]
    assert inst.answer_type == CHOICE and inst.choices is None
    assert inst.valid_letters() == "ABC"


def test_gold_not_a_choice_letter_is_error(tmp_path):
    """Choices given but the gold is not one of their letters: DataError."""
    for gold in ("D", "x", "AB"):
        row = {"question": "Q?", "choices": ["1", "2", "3"], "gold_answer": gold}
        with pytest.raises(DataError, match="gold_answer"):
            load_local(write_jsonl(tmp_path / "d.jsonl", [row]), "t")


def test_duplicate_ids_are_error(tmp_path):
    """Two rows with one id: DataError naming the id."""
    rows = [{"id": "same", "question": "q1", "gold_answer": "1"},
            {"id": "same", "question": "q2", "gold_answer": "2"}]
    with pytest.raises(DataError, match="same"):
        load_local(write_jsonl(tmp_path / "d.jsonl", rows), "t")


def test_rows_without_id_get_distinct_ids(tmp_path):
    """Rows without an id get distinct generated ids."""
    rows = [{"question": f"q{i}", "gold_answer": str(i)} for i in range(5)]
    ids = [i.id for i in load_local(write_jsonl(tmp_path / "d.jsonl", rows), "t")]
    assert len(set(ids)) == 5


# --- hub adapters --------------------------------------------------------------------------------


def gpqa(rid: str) -> dict:
    return {
        "Question": " Which? ",
        "Correct Answer": "right",
        "Incorrect Answer 1": "w1",
        "Incorrect Answer 2": "w2",
        "Incorrect Answer 3": "w3",
        "Record ID": rid,
        "Subdomain": "Physics",
    }


def test_gpqa_row_gold_points_at_correct_answer_and_is_deterministic():
    """After shuffling, the gold letter names the correct answer; same Record ID, same order."""
    golds = set()
    for rid in [f"rec{i}" for i in range(12)]:
        row = gpqa_row(gpqa(rid), 0)
        assert row["choices"]["ABCD".index(row["gold_answer"])] == "right"
        assert sorted(row["choices"]) == ["right", "w1", "w2", "w3"]
        assert gpqa_row(gpqa(rid), 99) == row
        golds.add(row["gold_answer"])
    assert golds != {"A"}


def test_mmlu_pro_row():
    """MMLU-Pro: options become choices, answer letter is the gold, category the subject."""
    row = mmlu_pro_row({"question_id": 7, "question": "Q", "options": ["1", "2", 3], "answer": "C",
                        "category": "law"}, 0)
    assert row == {"id": "mmlu_pro-7", "question": "Q", "choices": ["1", "2", "3"], "gold_answer": "C",
                   "subject": "law"}


def test_medmcqa_row_cop_index_to_letter():
    """MedMCQA: cop is a 0-based index into opa..opd."""
    raw = {"id": "m1", "question": "Q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 2,
           "subject_name": "Anatomy"}
    row = medmcqa_row(raw, 0)
    assert row["gold_answer"] == "C" and row["choices"][2] == "c" and row["subject"] == "Anatomy"


def test_aime_row_integer_answer_to_string():
    """AIME: the integer answer is kept as a string, math type."""
    row = aime_row({"id": 3, "problem": "P", "answer": 204}, 0)
    assert row["gold_answer"] == "204" and row["answer_type"] == "math" and row["id"] == "aime-3"


def test_matches_range_inclusive_and_equality():
    """where: [low, high] is inclusive; a scalar rule is equality; a missing field fails a range."""
    rule = {"year": [2024, 2025], "part": "I"}
    assert matches({"year": 2024, "part": "I"}, rule)
    assert matches({"year": 2025, "part": "I"}, rule)
    assert not matches({"year": 2023, "part": "I"}, rule)
    assert not matches({"year": 2026, "part": "I"}, rule)
    assert not matches({"year": 2024, "part": "II"}, rule)
    assert not matches({"part": "I"}, rule)


def test_load_hub_filters_and_converts(monkeypatch):
    """load_hub applies ``where`` and the adapter (datasets replaced by a fake module)."""
    rows = [{"id": i, "problem": f"P{i}", "answer": i * 10, "year": 2020 + i} for i in range(5)]
    fake = types.SimpleNamespace(load_dataset=lambda *a, **k: rows)
    monkeypatch.setitem(sys.modules, "datasets", fake)
    out = load_hub("x/aime", None, "train", "aime", "aime", "auto", {"year": [2022, 2023]})
    assert [(i.id, i.gold, i.answer_type) for i in out] == [("aime-2", "20", MATH), ("aime-3", "30", MATH)]


# --- sampling ------------------------------------------------------------------------------------


def insts(n: int, subjects: int = 1) -> list[Instance]:
    return [Instance(f"i{j}", "t", f"q{j}", "1", MATH, subject=f"s{j % subjects}") for j in range(n)]


def test_sample_seeded_order_preserved_none_keeps_all():
    """sample: seeded, original order kept, None (or size >= n) keeps everything."""
    pool = insts(30)
    a, b = sample(pool, 10, seed=1), sample(pool, 10, seed=1)
    assert a == b and len(a) == 10
    assert [int(i.id[1:]) for i in a] == sorted(int(i.id[1:]) for i in a)
    assert sample(pool, 10, seed=2) != a
    assert sample(pool, None, seed=1) == pool
    assert sample(pool, 30, seed=1) == pool


def test_sample_per_subject():
    """Up to ``size`` instances of every subject, original order kept."""
    pool = insts(30, subjects=3) + [Instance("solo", "t", "q", "1", MATH, subject="rare")]
    out = sample_per_subject(pool, 4, seed=0)
    by_subject = {s: sum(i.subject == s for i in out) for s in ("s0", "s1", "s2", "rare")}
    assert by_subject == {"s0": 4, "s1": 4, "s2": 4, "rare": 1}
    assert [pool.index(i) for i in out] == sorted(pool.index(i) for i in out)


def test_load_data_removes_shared_questions_before_sampling(tmp_path):
    """Validation questions shared with test are dropped BEFORE the validation sample is drawn."""
    test_rows = [{"question": f"shared {i}", "gold_answer": str(i)} for i in range(4)]
    val_rows = test_rows[:3] + [{"question": f"val only {i}", "gold_answer": str(i)} for i in range(7)]
    test_path = write_jsonl(tmp_path / "test.jsonl", test_rows)
    val_path = write_jsonl(tmp_path / "val.jsonl", val_rows)
    for size in (5, 7):
        cfg = DataConfig("t", SplitSpec(path=str(val_path), sample=size), SplitSpec(path=str(test_path)))
        val, test = load_data(cfg, seed=0)
        assert len(test) == 4
        assert len(val) == size
        assert not {i.question for i in val} & {i.question for i in test}


def test_a_shared_question_stem_with_other_options_is_not_a_shared_question(tmp_path):
    """'Which of the following is true?' with other options is another question: validation keeps it."""
    stem = "Which of the following is true?"
    test_path = write_jsonl(tmp_path / "test.jsonl",
                            [{"question": stem, "choices": ["a", "b"], "gold_answer": "A"}])
    val_path = write_jsonl(tmp_path / "val.jsonl",
                           [{"question": stem, "choices": ["c", "d"], "gold_answer": "B"},
                                                    {"question": stem, "choices": ["a", "b"],
                                                     "gold_answer": "A"}])
    val, _ = load_data(DataConfig("t", SplitSpec(path=str(val_path)), SplitSpec(path=str(test_path))), seed=0)
    assert [i.choices for i in val] == [("c", "d")]


# --- demo set ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["val.jsonl", "test.jsonl"])
def test_demo_set_loads(name):
    """The shipped demo files load: 40 instances each, both tasks and answer types present."""
    out = load_local(demo_data_path(name), "demo")
    assert len(out) == 40
    assert {i.task for i in out} == {"demo_mc", "demo_math"}
    assert {i.answer_type for i in out} == {CHOICE, MATH}


def test_an_id_of_zero_is_kept(tmp_path):
    """A numeric id 0 is a real id, not a missing one."""
    from skillmoe_ray.data.local import load_local

    path = tmp_path / "q.jsonl"
    path.write_text('{"id": 0, "question": "q?", "gold_answer": "1"}\n')
    assert load_local(path, "t")[0].id == "0"
