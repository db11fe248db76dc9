"""Faults, round three (issue 24), in-process: storage errors, deterministic errors, per-request isolation,
prompt lengths before loading, the run directory lock. The command-line and Serve halves are in
tests/ray/test_faults_cli.py and tests/ray/test_serve.py."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from skillmoe_ray.config import ModelSpec
from skillmoe_ray.errors import ConfigError, DataError, EngineError, StorageError, one_line, user_facing
from skillmoe_ray.scheduling.executor import SlotExecutor
from skillmoe_ray.scheduling.handles import LocalExpert
from skillmoe_ray.scheduling.policy import ExecutionPolicy
from tests.conftest import make_config, make_full, unmount
from tests.unit.test_executor import CountingEngine, groups
from tests.unit.test_online import QUESTIONS, job, router_for


def test_a_ray_wrapped_user_error_is_unwrapped_to_its_own_one_line_message():
    from ray.exceptions import RayTaskError

    cause = EngineError("fake failure of expert 'a'")
    wrapped = RayTaskError("DriverActor.run", "Traceback ...\n  File x\n" * 20, cause).as_instanceof_cause()
    assert isinstance(wrapped, EngineError)  # why a plain isinstance check printed the whole remote traceback
    assert user_facing(wrapped) is cause and str(user_facing(wrapped)) == "fake failure of expert 'a'"
    assert one_line(RayTaskError("f", "tb\n" * 9,
                                 ValueError("bad\nmore")).as_instanceof_cause()) == "ValueError: bad"


class RaisingEngine(CountingEngine):
    error: Exception = ValueError("prompt too long")

    def _generate(self, requests):
        raise RaisingEngine.error


@pytest.mark.parametrize("error, attempts", [(ValueError("prompt is too long"), 1),
                                             (RuntimeError("The actor died unexpectedly"), 3)])
def test_a_deterministic_error_is_not_retried_a_lost_actor_is(error, attempts):
    from skillmoe_ray.errors import ExpertFailed

    CountingEngine.calls, RaisingEngine.error = [], error
    ex = SlotExecutor(lambda name,
                      slot=0: LocalExpert(RaisingEngine(ModelSpec(name=name, path=f"fake/{name}"))),
                      ExecutionPolicy(max_retries=2))
    with pytest.raises(ExpertFailed, match="expert a failed in stage inference") as failed:
        ex.run_stage("inference", groups("a"), [], lambda g, outs, t: None)
    assert CountingEngine.calls.count(("load", "a")) == attempts
    assert ("not retried" in str(failed.value)) == (attempts == 1)


def test_a_failing_store_stops_the_batch_naming_it_without_retrying_or_reloading_the_expert():
    CountingEngine.calls = []
    ex = SlotExecutor(lambda name,
                      slot=0: LocalExpert(CountingEngine(ModelSpec(name=name, path=f"fake/{name}"))),
                      ExecutionPolicy(max_retries=2))

    def store(group, outputs, seconds):
        raise StorageError("cannot write the generation cache at /x: No space left on device (ENOSPC)")

    with pytest.raises(StorageError, match="/x: No space left on device"):
        ex.run_stage("inference", groups("a", "b"), [], store)
    assert CountingEngine.calls == [("load", "a")] and ex.generate_calls == 1
    assert "a" in ex.resident_experts()  # kept loaded: the expert did nothing wrong


def test_a_full_cache_in_a_batch_stage_is_a_storage_error_naming_the_path(tmp_path):
    from skillmoe_ray.generation import GenerationService

    cfg = make_config(tmp_path)
    words = make_full(tmp_path / "cache")
    try:
        service = GenerationService(cfg, SlotExecutor(lambda name, slot=0: LocalExpert(
            CountingEngine(ModelSpec(name=name, path=f"fake/{name}")))))
        pairs = [(g.expert, r) for g in groups("tiny-llama-a") for r in g.requests]
        with pytest.raises(StorageError) as failed:
            service.generate("inference", pairs)
    finally:
        unmount(tmp_path / "cache")
    message = str(failed.value)
    assert str(tmp_path / "cache" / "generations") in message and words in message and "free" in message


def test_under_serving_a_full_cache_still_answers_and_counts_the_failed_writes(tmp_path):
    from collections import Counter

    router, executor = router_for(tmp_path)  # prepared on a healthy cache
    before = Counter(executor.activations)
    make_full(tmp_path / "cache")
    try:
        outcomes = router.answer([job(q) for q in QUESTIONS[:4]])
    finally:
        unmount(tmp_path / "cache")
    assert [o.status for o in outcomes] == [200] * 4
    assert router.generation.store_failures > 0
    loads = Counter(executor.activations) - before
    assert loads and max(loads.values()) == 1  # no expert loaded twice for it


def test_a_request_that_fails_inside_the_engine_fails_alone_and_its_batch_neighbours_are_answered(tmp_path):
    router, _ = router_for(tmp_path)
    jobs = [job(q) for q in QUESTIONS[:5]]
    jobs[2] = dataclasses.replace(jobs[2], question="What is 2 + 2? \ud800")  # past the boundary's check
    outcomes = router.answer(jobs)
    assert [o.status for o in outcomes] == [200, 200, 502, 200, 200]
    assert "UnicodeEncodeError" in outcomes[2].error and "Traceback" not in outcomes[2].error


def test_text_that_is_not_valid_unicode_is_refused_at_the_api_naming_the_field():
    from skillmoe_ray.serving.openai_api import BadRequest, parse_request

    body = json.dumps({"messages": [{"role": "user", "content": "hi \ud800"}]}).encode()
    with pytest.raises(BadRequest,
                       match=r"messages\[0\]\.content: character 3 is the lone surrogate") as refused:
        parse_request(body, 1 << 20, 3)
    assert refused.value.param == "messages"


def test_text_that_is_not_valid_unicode_in_a_data_file_is_one_error_naming_file_and_line(tmp_path):
    from skillmoe_ray.data.local import load_local

    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "ok?", "gold_answer": "1"}\n'
                    '{"question": "bad \\ud800", "gold_answer": "2"}\n')
    with pytest.raises(DataError, match=rf"{path}:2: field question: character 4 is the lone surrogate"):
        load_local(path, "math")


def test_a_keyword_model_context_overflow_is_refused_before_any_model_loads(tmp_path, tiny_model_dir):
    from skillmoe_ray.data import load_data
    from skillmoe_ray.preflight import check_prompt_lengths

    cfg = make_config(
        tmp_path,
        [
            f"pool.models.tiny-keyword.path={tiny_model_dir}",
            "pool.models.tiny-keyword.max_model_len=300",
            "skills.max_tokens=200",
        ],
    )
    val, _ = load_data(cfg.data, cfg.seed)
    with pytest.raises(
        DataError,
        match=r"for the keyword model 'tiny-keyword', whose context leaves 100 "
        r"\(pool.models.tiny-keyword.max_model_len=300 minus 200",
    ):
        check_prompt_lengths(cfg, val)


def test_an_aggregator_prompt_too_long_for_its_context_cuts_each_answers_reasoning_keeping_its_end():
    from skillmoe_ray.method.aggregate import CUT_MARK, fit_replies

    short, long = "The answer is (B).", "step " * 2000 + "so the answer is (C)."
    fitted = fit_replies([short, long, "<think>" + "x" * 5000 + "</think>The answer is (A)."], 300)
    assert fitted[0] == short and fitted[2] == "The answer is (A)."  # reasoning before the tag goes first
    assert (
        fitted[1].startswith(CUT_MARK)
        and fitted[1].endswith("so the answer is (C).")
        and len(fitted[1]) <= 200
    )


def test_a_hub_model_running_its_own_code_must_pin_a_revision():
    from skillmoe_ray.config import check_remote_code

    unpinned = ModelSpec("glm", "THUDM/glm-4-9b-chat", trust_remote_code=True)
    with pytest.raises(
        ConfigError, match=r"pool.models.glm.trust_remote_code=true .* pool.models.glm.revision="
    ):
        check_remote_code({"glm": unpinned})
    check_remote_code({"glm": dataclasses.replace(unpinned, revision="abc123")})


def test_a_run_directory_in_use_is_refused_in_one_line(tmp_path):
    from skillmoe_ray.preflight import run_dir_lock

    in_use = rf"run directory {tmp_path} is in use by another run \(pid {os.getpid()}\)"
    with run_dir_lock(str(tmp_path)), pytest.raises(ConfigError, match=in_use), run_dir_lock(str(tmp_path)):
        pass
    with run_dir_lock(str(tmp_path)):  # released when the run ends
        pass


def test_the_labs_validation_size_zero_is_refused_not_read_as_the_default():
    from skillmoe_ray.config import SplitSpec
    from skillmoe_ray.lab.world import lab_source

    with pytest.raises(ConfigError, match=r"data.val.size must be >= 1"):
        lab_source(SplitSpec(source="lab", size=0), "lab", "lab.val", 0)


def test_a_run_directory_that_fills_up_is_named_as_storage_with_exit_2_not_a_traceback(tmp_path):
    import errno

    from skillmoe_ray.run import failure_line

    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "results.json"))
    line, code = failure_line(full, str(tmp_path))
    assert code == 2 and line.startswith(
        f"error: cannot write the run directory at {tmp_path / 'results.json'}: "
        "No space left on device (ENOSPC)"
    )
    line, code = failure_line(KeyboardInterrupt(), str(tmp_path))
    assert code == 130 and line.startswith("interrupted (Ctrl-C)")
    line, code = failure_line(RuntimeError("boom\nsecond line"), str(tmp_path))
    assert code == 1 and line.startswith("error: unexpected RuntimeError: boom (traceback in ")
    assert "RuntimeError: boom" in (tmp_path / "run.log").read_text()
