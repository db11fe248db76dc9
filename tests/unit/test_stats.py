"""Standard errors, paired bootstrap and seeds summaries pinned against hand-computed values."""

from __future__ import annotations

import pytest

from skillmoe_ray.reporting.stats import mean_std, paired_bootstrap, seeds_summary, standard_error


def test_standard_error_of_an_accuracy():
    assert standard_error([True] * 3 + [False]) == pytest.approx(0.2165, abs=1e-4)  # sqrt(.75 * .25 / 4)
    assert standard_error([True] * 10) == 0.0 and standard_error([]) == 0.0
    assert standard_error([True] * 99 + [False] * 99) == pytest.approx(
        0.0355, abs=1e-4
    )  # GPQA-sized: +/-3.5 points


def test_wilson_interval_does_not_claim_certainty_from_15_questions():
    from skillmoe_ray.reporting.stats import accuracy_entry, shown, wilson_interval

    perfect = accuracy_entry([True] * 15)
    assert perfect["stderr"] == 0.0 and perfect["ci95"] == [0.7961, 1.0]
    assert wilson_interval([True] * 8 + [False] * 2) == [0.4902, 0.9433]  # the textbook 8/10
    assert wilson_interval([]) == [0.0, 1.0]
    assert shown(perfect) == "1.000 +/- 0.000 [0.796, 1.000]"


def test_paired_bootstrap_difference_and_interval():
    same = paired_bootstrap([True, False] * 50, [True, False] * 50)
    assert same == {"difference": 0.0, "low": 0.0, "high": 0.0}  # identical answers: no spread at all
    better = paired_bootstrap([True] * 100, [True] * 50 + [False] * 50, seed=1)
    assert better["difference"] == 0.5
    assert 0.39 <= better["low"] < 0.5 < better["high"] <= 0.61  # +/- 1.96 * sqrt(.25 / 100) = +/- 0.098
    assert paired_bootstrap([True] * 100, [True] * 50 + [False] * 50, seed=1) == better  # seeded
    with pytest.raises(ValueError, match="same instances"):
        paired_bootstrap([True], [True, False])


def test_seeds_summary_is_mean_and_sample_std_per_method():
    runs = [
        {"methods": {"a": {"accuracy": 0.9}, "b": {"accuracy": 0.4}}},
        {"methods": {"a": {"accuracy": 1.0}, "b": {"accuracy": 0.5}, "only_here": {"accuracy": 1.0}}},
        {"methods": {"a": {"accuracy": 0.95}, "b": {"accuracy": 0.3}}},
    ]
    summary = seeds_summary(runs)
    assert set(summary) == {"a", "b"}
    assert summary["a"] == {"mean": 0.95, "std": 0.05, "runs": 3}
    assert summary["b"]["mean"] == 0.4 and summary["b"]["std"] == pytest.approx(0.1)
    assert mean_std([0.7]) == (0.7, 0.0)


def test_report_seeds_summarizes_run_directories_and_multirun_parents(tmp_path, capsys):
    import json

    from skillmoe_ray.reporting.report import main

    for seed, acc in [(0, 0.9), (1, 1.0), (2, 0.95)]:
        run = tmp_path / "multirun" / str(seed)
        run.mkdir(parents=True)
        (run / "results.json").write_text(
            json.dumps({"experiment": "lab", "seed": seed, "methods": {"symbolic_moe": {"accuracy": acc}}})
        )
    main(["--seeds", str(tmp_path / "multirun")])
    out = capsys.readouterr().out
    assert "3 runs of lab (seeds 0, 1, 2)" in out and "| symbolic_moe | 0.950 +/- 0.050 | 3 |" in out
    with pytest.raises(SystemExit, match="no results.json in or under"):
        main(["--seeds", str(tmp_path / "nothing")])


def test_report_cli_help_exits_0_and_errors_are_one_line(tmp_path, capsys):
    import json

    from skillmoe_ray.reporting.report import main

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0 and "--seeds" in capsys.readouterr().out
    for argv, message in [
        ([], "error: give a run directory, or --seeds DIR... (see --help)"),
        (["--seeds"], "error: argument --seeds: expected at least one argument (see --help)"),
    ]:
        with pytest.raises(SystemExit) as done:
            main(argv)
        err = capsys.readouterr().err
        assert done.value.code == 2 and err.strip() == message and err.count("\n") == 1
    with pytest.raises(SystemExit, match=r"^error: no results.json in .*nothing \(is it a run directory\?\)"):
        main([str(tmp_path / "nothing")])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{not json")
    with pytest.raises(SystemExit, match="^error: cannot read .*results.json"):
        main([str(tmp_path / "broken")])
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "results.json").write_text(
            json.dumps({"experiment": "lab", "seed": seed, "methods": {"symbolic_moe": {"accuracy": 0.5}}})
        )
    main(["--seeds", str(tmp_path / "runs")])
    captured = capsys.readouterr()
    assert "warning: runs repeat a seed (seed 0 in 2 runs)" in captured.err
    assert "3 runs of lab (seeds 0, 1)" in captured.out
