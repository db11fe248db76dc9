"""The seeds table (make lab-table) pinned against hand-computed values: mean +/- std per task and on average,
and the paired difference to symbolic_moe over (seed, question) pairs with its bootstrap interval."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from skillmoe_ray.errors import DataError
from skillmoe_ray.reporting import seed_table
from skillmoe_ray.reporting.lab_table import code_fingerprint, finished, run_dir_of, seed_overrides


def compare_run(seed: int, answers: dict[str, dict[str, list[int]]]) -> seed_table.SeedRun:
    """A SeedRun from ``answers``: method -> task -> correctness of that task's questions, made into the
    results.json and final_answers.jsonl rows a compare run writes (question ids q<task><i>)."""
    methods = list(answers)
    tasks = answers[methods[0]]
    rows = [{"id": f"q{task}{i}", "task": task,
             "correct": {m: bool(answers[m][task][i]) for m in methods}}
            for task, flags in tasks.items() for i in range(len(flags))]
    return seed_table.seed_run({"seed": seed, "methods": {m: {} for m in methods}}, rows)


# Two seeds, tasks x and y of two questions each. Hand-computed: a is 1.0, 0.5 on x (0.75 +/- 0.354),
# 0.5, 1.0 on y (0.75 +/- 0.354), 0.75 both seeds on average (0.75 +/- 0); symbolic_moe is 0.5, 0.0 on x,
# 1.0, 0.5 on y, 0.75, 0.25 on average (0.5 +/- 0.354); a - symbolic_moe over the 8 pairs: (6 - 4) / 8.
HAND_MADE = [
    compare_run(0, {"symbolic_moe": {"x": [1, 0], "y": [1, 1]}, "a": {"x": [1, 1], "y": [0, 1]}}),
    compare_run(1, {"symbolic_moe": {"x": [0, 0], "y": [1, 0]}, "a": {"x": [1, 0], "y": [1, 1]}}),
]


def test_mean_and_sample_std_over_seeds_per_task_and_on_average():
    table = seed_table.build("lab", HAND_MADE)
    assert table.tasks == ["x", "y"] and table.seeds == [0, 1] and table.questions_per_seed == [4, 4]
    sym, a = table.rows
    assert sym.method == "symbolic_moe" and a.method == "a"
    assert a.per_task == {"x": (0.75, pytest.approx(0.3536, abs=1e-4)), "y": (0.75, pytest.approx(0.3536,
                                                                                                      abs=1e-4))}
    assert a.average == (0.75, 0.0)
    assert sym.per_task["x"] == (0.25, pytest.approx(0.3536, abs=1e-4))
    assert sym.average == (0.5, pytest.approx(0.3536, abs=1e-4))


def test_the_difference_pairs_questions_over_all_seeds():
    sym, a = seed_table.build("lab", HAND_MADE).rows
    assert sym.vs_reference is None
    assert a.vs_reference["difference"] == 0.25
    assert a.vs_reference["low"] <= 0.25 <= a.vs_reference["high"]


def test_the_interval_is_a_paired_bootstrap_of_the_pooled_pairs():
    # method right wherever symbolic_moe is, and on half the rest: per seed 100 questions, symbolic_moe right
    # on none of them; a right on 50 in seed 0 and 50 in seed 1: difference 0.5 over 200 pairs,
    # +/- 1.96 * sqrt(.25 / 200) = +/- 0.069
    runs = [compare_run(s, {"symbolic_moe": {"t": [0] * 100}, "a": {"t": [1, 0] * 50}}) for s in (0, 1)]
    vs = seed_table.build("lab", runs).rows[1].vs_reference
    assert vs["difference"] == 0.5
    assert 0.42 <= vs["low"] < 0.5 < vs["high"] <= 0.58
    same = [compare_run(s, {"symbolic_moe": {"t": [1, 0, 1]}, "a": {"t": [1, 0, 1]}}) for s in (0, 1)]
    assert seed_table.build("lab", same).rows[1].vs_reference == {"difference": 0.0, "low": 0.0, "high": 0.0}


def test_markdown_and_csv_hold_the_same_figures():
    table = seed_table.build("lab", HAND_MADE)
    markdown = seed_table.to_markdown(table)
    assert "| method | x | y | average | vs symbolic_moe [95% CI] |" in markdown
    assert "| symbolic_moe | 0.250 +/- 0.354 | 0.750 +/- 0.354 | 0.500 +/- 0.354 | - |" in markdown
    assert "| a | 0.750 +/- 0.354 | 0.750 +/- 0.354 | 0.750 +/- 0.000 | +0.250 [" in markdown
    assert "seeds 0, 1 (4 test questions each)" in markdown and "all 8 (seed, question) pairs" in markdown
    rows = list(csv.DictReader(io.StringIO(seed_table.to_csv(table))))
    assert [r["method"] for r in rows] == ["symbolic_moe", "a"]
    assert float(rows[1]["x_mean"]) == 0.75 and float(rows[1]["average_std"]) == 0.0
    assert float(rows[1]["vs_symbolic_moe"]) == 0.25 and rows[0]["vs_symbolic_moe"] == ""
    assert rows[0]["seeds"] == "0 1" and rows[0]["pairs"] == "8"


def test_methods_missing_from_a_seed_are_left_out_and_the_reference_is_required():
    runs = [*HAND_MADE, compare_run(2, {"symbolic_moe": {"x": [1, 1], "y": [0, 0]}})]
    assert [r.method for r in seed_table.build("lab", runs).rows] == ["symbolic_moe"]
    with pytest.raises(DataError, match="needs the method symbolic_moe"):
        seed_table.build("lab", [compare_run(0, {"a": {"x": [1]}})])
    with pytest.raises(DataError, match="seed 1 has no question of task y"):
        seed_table.build("lab", [HAND_MADE[0], compare_run(1, {"symbolic_moe": {"x": [1]}})])


def test_a_question_without_a_methods_correctness_is_a_clear_error():
    rows = [{"id": "q1", "task": "t", "correct": {"symbolic_moe": True}}]
    with pytest.raises(DataError, match="no correctness of method a for question q1"):
        seed_table.seed_run({"seed": 3, "methods": {"symbolic_moe": {}, "a": {}}}, rows)


def test_each_seed_and_config_gets_its_own_run_directory(tmp_path: Path):
    tree = {"seed": 0, "recruit": {"k": 3}}
    first = run_dir_of(tmp_path, "lab_hard", 0, tree)
    assert first == run_dir_of(tmp_path, "lab_hard", 0, dict(tree))  # the same config: the same directory
    assert first != run_dir_of(tmp_path, "lab_hard", 0, {**tree, "recruit": {"k": 2}})
    assert first != run_dir_of(tmp_path, "lab_hard", 0, tree, code="other sources")  # changed code: a new run
    assert first.name.startswith("seed0-")
    assert seed_overrides("lab_hard", 1, ["recruit.k=2"]) == [
        "+experiment=lab_hard", "mode=compare", "seed=1", "recruit.k=2"]
    first.mkdir(parents=True)
    (first / "results.json").write_text("{}")
    assert not finished(first)  # a run that stopped before its answers were written is run again
    (first / "final_answers.jsonl").write_text("")
    assert finished(first)


def test_a_bad_override_is_one_line_before_any_run(tmp_path: Path, capsys):
    from skillmoe_ray.reporting.lab_table import main

    assert main(["--out", str(tmp_path), "--", "recruit.kk=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown config key 'recruit.kk'") and err.count("\n") == 1
    assert not (tmp_path / "lab_hard").exists()  # nothing was run


def test_a_repeated_seed_is_refused(capsys):
    from skillmoe_ray.reporting.lab_table import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--seeds", "0", "0"])
    assert exit_info.value.code == 2 and "--seeds repeats a seed (0 0)" in capsys.readouterr().err


def test_the_code_fingerprint_changes_with_a_python_source_only(tmp_path: Path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "notes.md").write_text("notes")
    first = code_fingerprint(tmp_path)
    assert first == code_fingerprint(tmp_path)
    (tmp_path / "notes.md").write_text("other notes")
    assert code_fingerprint(tmp_path) == first  # not a Python source
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert code_fingerprint(tmp_path) != first
    assert code_fingerprint() == code_fingerprint()  # the installed package's
