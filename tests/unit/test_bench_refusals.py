"""The schedule bench refuses, in one line, combinations putting several vLLM engines in its process."""

from __future__ import annotations

import pytest

from skillmoe_ray.bench.schedule import parse_args, unworkable


@pytest.mark.parametrize("argv, words", [
    (["--engine", "vllm", "--deactivate", "auto"], "--deactivate auto: sleeping experts"),
    (["--engine", "vllm", "--device", "cuda"], "one vLLM engine per process on CUDA"),
    (["--engine", "vllm", "--gpus", "2"], "--gpus 2: the slots would load vLLM engines side by side"),
])
def test_unworkable_vllm_combinations_are_refused(argv, words, capsys):
    with pytest.raises(SystemExit):
        parse_args(argv)
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert words in error


def test_what_works_passes():
    assert unworkable("vllm", "cpu", "unload", 1) is None
    assert unworkable("hf", "cuda", "auto", 4) is None
    assert parse_args(["--engine", "vllm"]).deactivate == "unload"
