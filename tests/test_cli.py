"""The command line as a user meets it: composed config printing and one-line errors for bad input."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FAKE_DEMO, REPO, run_cli


def test_cfg_job_prints_the_gpqa_config_with_the_16_model_pool():
    proc = run_cli(["+experiment=gpqa", "--cfg", "job"], cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "experiment: gpqa" in proc.stdout
    for model in ["meta-llama/Llama-3.1-8B-Instruct", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
                  "ContactDoctor/Bio-Medical-Llama-3-8B"]:
        assert model in proc.stdout
    assert proc.stdout.count("max_model_len:") == 16


def _bad_rows(tmp_path):
    good = tmp_path / "val.jsonl"
    good.write_text(json.dumps({"question": "1+1?", "gold_answer": "2"}) + "\n")
    bad = tmp_path / "test.jsonl"
    bad.write_text(json.dumps({"question": "ok",
                               "gold_answer": "1"}) + "\n" + json.dumps({"question": "no gold"}) + "\n")
    return [f"data.val.path={good}", f"data.test.path={bad}"], f"{bad}:2: missing field 'gold_answer'"


@pytest.mark.parametrize(
    "case",
    ["unknown_group", "unknown_expert", "k_zero", "missing_file", "malformed_row", "missing_model_path",
     "missing_value",
     "non_utf8", "unwritable_cache"],
)
def test_bad_input_is_one_clear_line_without_traceback(case, tmp_path):
    args, expected = {
        "unknown_group": (
            ["pool=nope"],
            "pool=nope: no such option in config group 'pool'; valid options: demo, fake, lab_hard, paper16, "
            "skill_lab",
        ),
        "unknown_expert": (
            ["skills.keyword_model=nope", "demo.build_models=false"],
            "unknown model 'nope'; models in the pool: tiny-aggregator",
        ),
        "k_zero": (["recruit.k=0"], "recruit.k must be >= 1, got 0"),
        "missing_file": (
            [
                "data=local",
                "data.test.path=/no/such.jsonl",
                "data.val.path=/no/such.jsonl",
                "demo.build_models=false",
                "pool=fake",
            ],
            "data file not found: /no/such.jsonl",
        ),
        "malformed_row": (["data=local", "demo.build_models=false", "pool=fake"], None),
        "missing_model_path": (
            ["demo.build_models=false", f"demo.models_dir={tmp_path / 'absent'}"],
            "expert 'tiny-llama-a': model path",
        ),
        "missing_value": (["data=local", "demo.build_models=false"], "missing value for data.test.path"),
        "non_utf8": (
            [
                "data=local",
                f"data.test.path={tmp_path / 'latin1.jsonl'}",
                f"data.val.path={tmp_path / 'latin1.jsonl'}",
                "demo.build_models=false",
                "pool=fake",
            ],
            f"{tmp_path / 'latin1.jsonl'}: not UTF-8 text (byte 17 is b'\\xe9')",
        ),
        "unwritable_cache": (
            [f"cache_dir={tmp_path / 'a-file' / 'cache'}"],
            f"cache_dir={tmp_path / 'a-file' / 'cache'} is not a writable directory",
        ),
    }[case]
    (tmp_path / "latin1.jsonl").write_bytes(
        '{"question": "caf\u00e9?", "gold_answer": "1"}\n'.encode("latin-1")
    )
    (tmp_path / "a-file").write_text("not a directory")
    base = ["+experiment=demo", f"hydra.run.dir={tmp_path / 'run'}"]
    if not any(a.startswith("cache_dir=") for a in args):
        base.append(f"cache_dir={tmp_path / 'cache'}")
    if case == "malformed_row":
        extra, expected = _bad_rows(tmp_path)
        args = args + extra
    proc = run_cli(base + args, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    "override, expected",
    [
        ("recruit.kk=3", "error: unknown config key 'recruit.kk'; closest valid keys: recruit.k"),
        (
            "engine=nosuch",
            "error: engine=nosuch: no such option in config group 'engine'; "
            "valid options: fake, hf, openai, vllm",
        ),
    ],
)
def test_hydra_level_mistakes_are_one_line_naming_the_valid_choices(override, expected, tmp_path):
    proc = run_cli(
        ["+experiment=demo", f"hydra.run.dir={tmp_path / 'run'}", override], cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith(expected) and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stdout == "" and not (tmp_path / "run").exists()


def read_only_dir(tmp_path) -> tuple:
    """A directory this user cannot write in.

    As root, whom permission bits do not stop, a regular file instead.
    """
    import os

    if os.geteuid() == 0:
        blocker = tmp_path / "a-file"
        blocker.write_text("not a directory")
        return blocker, f"{blocker} is not a directory"
    blocker = tmp_path / "read-only"
    blocker.mkdir()
    blocker.chmod(0o555)
    return blocker, f"cannot be written in {blocker}"


@pytest.mark.parametrize("multirun", [False, True])
def test_a_run_directory_that_cannot_be_written_is_one_line_naming_it(multirun, tmp_path):
    blocker, why = read_only_dir(tmp_path)
    target = blocker / "runs" / "demo"
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    proc = run_cli(
        [*FAKE_DEMO, f"cache_dir={tmp_path / 'cache'}", f"{key}={target}", *(["-m"] if multirun else [])],
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(f"error: {key}={target} ") and why in proc.stderr
    assert f"set {key}=<a directory you can write>" in proc.stderr
    assert not (tmp_path / "cache").exists()  # nothing ran


def test_plan_mode_prints_the_gpqa_schedule_and_makespans_without_loading_models(tmp_path):
    import re

    proc = run_cli(
        [
            "+experiment=gpqa",
            "mode=plan",
            f"cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "estimate: 198 test / 249 validation instances, k=3" in out
    for model in ("deepseek-r1-distill-qwen-7b", "bio-medical-llama-3-8b", "qwen2.5-math-7b"):
        assert model in out
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+\d+:\d\d:\d\d\s+(\d+)\s+([\d.]+)$", out, re.M)
    assert [int(r[0]) for r in rows] == [1, 2, 4, 8]
    makespans = [float(r[1]) for r in rows]
    assert makespans == sorted(makespans, reverse=True) and makespans[0] > makespans[-1]
    assert "DriverActor" not in out + proc.stderr and not (tmp_path / "cache" / "generations").exists()


def test_plan_mode_with_replicas_shows_the_copies_and_a_shorter_makespan_on_many_gpus(tmp_path):
    import re

    def makespans(*extra):
        proc = run_cli(
            [
                "+experiment=gpqa",
                "mode=plan",
                "resources.gpus=8",
                *extra,
                f"cache_dir={tmp_path / 'cache'}",
                f"hydra.run.dir={tmp_path / 'run'}",
            ],
            cwd=tmp_path,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        rows = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+\d+:\d\d:\d\d\s+(\d+)\s+([\d.]+)$", proc.stdout, re.M)
        return proc.stdout, {int(r[0]): float(r[1]) for r in rows}

    out, spread = makespans("scheduler.max_replicas=8")
    _, whole = makespans()
    assert "qwen2.5-7b-instruct#1" in out  # the keyword model's skill stage runs on copies
    assert spread[8] < 0.5 * whole[8] and spread[1] == whole[1]
