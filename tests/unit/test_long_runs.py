"""Long runs in-process.

Chunked groups, progress lines on a timer, stage rows, the GPU-slot check, live W&B.
"""

from __future__ import annotations

import json
import logging
import time

import pytest

from skillmoe_ray.config import ModelSpec, TrackingConfig
from skillmoe_ray.data import load_data
from skillmoe_ray.engines import create_engine
from skillmoe_ray.engines.base import GenRequest, Sampling
from skillmoe_ray.engines.fake import FakeEngine
from skillmoe_ray.errors import ExpertFailed
from skillmoe_ray.pipeline import Pipeline
from skillmoe_ray.progress import LogBar, duration, rate_line
from skillmoe_ray.reporting.tracking import LiveTracking
from skillmoe_ray.scheduling.executor import SlotExecutor
from skillmoe_ray.scheduling.grouping import ExpertGroup, chunked
from skillmoe_ray.scheduling.handles import LocalExpert
from skillmoe_ray.scheduling.policy import ExecutionPolicy
from skillmoe_ray_actors.placement import gpu_shortage
from tests.conftest import make_config
from tests.unit.test_pipeline import fake_embedder
from tests.wandb_offline import offline_runs, read_offline_run


class FlakyEngine(FakeEngine):
    """The fake engine whose generate() raises once, on its ``fail_on``-th call of the process."""

    calls = 0
    fail_on = 0

    def _generate(self, requests):
        FlakyEngine.calls += 1
        if FlakyEngine.calls == FlakyEngine.fail_on:
            raise RuntimeError("engine crashed")
        return super()._generate(requests)


def requests(expert: str, n: int) -> list[GenRequest]:
    return [
        GenRequest.make(
            [{"role": "user", "content": f"Question: {expert} {i}"}], Sampling(8, seed=i), f"t/{expert}/{i}"
        )
        for i in range(n)
    ]


def run_chunked(chunk: int, n: int = 10, fail_on: int = 0, retries: int = 0):
    FlakyEngine.calls, FlakyEngine.fail_on = 0, fail_on
    ex = SlotExecutor(
        lambda name, slot=0: LocalExpert(FlakyEngine(ModelSpec(name=name, path=f"fake/{name}"))),
        ExecutionPolicy(chunk_requests=chunk, max_retries=retries),
    )
    stored: list[list[str]] = []
    texts: dict[str, str] = {}

    def done(group, outputs, seconds):
        stored.append([r.tag for r in group.requests])
        texts.update({r.tag: o.text for r, o in zip(group.requests, outputs)})

    ex.run_stage("s", [ExpertGroup("a", requests("a", n)), ExpertGroup("b", requests("b", 3))], [], done)
    return ex, stored, texts


def test_chunked_splits_in_order_and_zero_means_one_call():
    assert chunked(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert chunked(list(range(7)), 0) == [list(range(7))]
    assert chunked([1, 2], 5) == [[1, 2]]


def test_a_group_is_stored_chunk_by_chunk_in_one_activation_with_the_same_outputs():
    ex, stored, texts = run_chunked(chunk=4)
    assert [len(tags) for tags in stored] == [4, 4, 2, 3]  # a: 10 in chunks of 4; b: 3 in one
    assert ex.stage_activations["s"] == {"a": 1, "b": 1}
    assert ex.generate_calls == 4
    assert {t.expert: t.chunks for t in ex.timeline} == {"a": 3, "b": 1}
    _, whole, same = run_chunked(chunk=0)
    assert [len(tags) for tags in whole] == [10, 3] and same == texts


def test_a_retry_resumes_at_the_first_chunk_not_stored():
    ex, stored, texts = run_chunked(chunk=4, fail_on=2, retries=1)  # a's second chunk fails once
    tags = [t for chunk in stored for t in chunk]
    assert len(tags) == len(set(tags)) == 13, "no chunk is generated twice"
    (entry,) = [t for t in ex.timeline if t.expert == "a"]
    assert len(entry.retries) == 1 and ex.stage_activations["s"]["a"] == 1


def test_after_the_last_retry_the_error_handler_gets_only_the_requests_not_done():
    FlakyEngine.calls, FlakyEngine.fail_on = 0, 2
    ex = SlotExecutor(
        lambda name, slot=0: LocalExpert(FlakyEngine(ModelSpec(name=name, path=f"fake/{name}"))),
        ExecutionPolicy(chunk_requests=4),
    )
    failed = []
    ex.run_stage(
        "s",
        [ExpertGroup("a", requests("a", 10))],
        [],
        lambda g, o, t: None,
        lambda group, exc: failed.append(len(group.requests)),
    )
    assert failed == [6]
    with pytest.raises(ExpertFailed):
        run_chunked(chunk=4, fail_on=2)


def test_rate_line_has_counts_rate_and_eta():
    assert rate_line("inference", 30, 120, 60.0, "requests") == (
        "inference: 30/120 requests (25%), 0.5 requests/s, ETA 3m00s, elapsed 1m00s"
    )
    assert "ETA unknown" in rate_line("inference", 0, 120, 5.0, "requests")
    assert duration(7322) == "2h02m" and duration(42) == "42 s"


def test_a_log_bar_writes_lines_on_a_timer_while_no_work_finishes(caplog):
    caplog.set_level(logging.INFO, logger="skillmoe_ray.progress")
    bar = LogBar(100, "profiles", every_s=0.1)
    bar.update(10)
    time.sleep(0.55)  # one long chunk: no update arrives, the lines keep coming
    bar.close()
    ticks = [r.getMessage() for r in caplog.records if "requests/s" in r.getMessage()]
    assert len(ticks) >= 3
    assert all(t.startswith("profiles: 10/100 requests (10%), ") and ", ETA " in t for t in ticks)
    assert caplog.records[-1].getMessage().startswith("profiles: 10/100 requests done in ")


def test_each_stage_reports_one_row_as_it_ends_and_chunking_changes_no_result(tmp_path):
    rows, results = [], {}
    for chunk in (0, 3):
        cfg = make_config(tmp_path / f"c{chunk}")
        ex = SlotExecutor(
            lambda name, slot=0, cfg=cfg: LocalExpert(create_engine(cfg.engine, cfg.pool[name])),
            ExecutionPolicy(chunk_requests=chunk),
        )
        pipe = Pipeline(cfg, ex, embedder_factory=fake_embedder)
        pipe.generation.on_stage = rows.append if chunk else None
        val, test = load_data(cfg.data, cfg.seed)
        results[chunk] = pipe.run(val, test)
    assert [r["stage"] for r in rows] == list(results[3]["stages"])
    assert [r["stage_index"] for r in rows] == list(range(1, len(rows) + 1))
    profiles = next(r for r in rows if r["stage"] == "profiles")
    assert profiles["stage_requests"] == results[3]["stages"]["profiles"]["requests"] > 0
    assert profiles["stage_output_tokens"] == results[3]["stages"]["profiles"]["output_tokens"]
    assert rows[-1]["activations_so_far"] == sum(results[3]["activations"].values())
    assert any(t["chunks"] > 1 for t in results[3]["timeline"])
    assert results[3]["activations_per_stage"] == results[0]["activations_per_stage"]
    answers = [
        json.loads(line)["answers"] for line in (tmp_path / "c3" / "run" / "final_answers.jsonl").open()
    ]
    assert answers == [
        json.loads(line)["answers"] for line in (tmp_path / "c0" / "run" / "final_answers.jsonl").open()
    ]
    assert {m: r["accuracy"] for m, r in results[3]["methods"].items()} == {
        m: r["accuracy"] for m, r in results[0]["methods"].items()
    }


def test_too_many_gpu_slots_name_what_the_cluster_has():
    message = gpu_shortage(8, {"10.0.0.1": 2.0})
    assert message.startswith(
        "resources.gpus=8 asks for 8 GPU slots, but the Ray cluster has 2 GPU(s) on 1 node(s)"
    )
    assert "10.0.0.1: 2" in message and "resources.gpus=2 or fewer" in message
    assert gpu_shortage(2, {"a": 1.0, "b": 1.0}) is None
    assert gpu_shortage(4, {"cpu-only": 0.0}) is None  # no GPUs at all: experts are placed without one


def test_live_tracking_logs_a_row_per_stage_and_a_dead_run_is_marked_failed_with_them(tmp_path):
    live = LiveTracking(TrackingConfig(mode="offline"), tmp_path, {"experiment": "x"})
    live.stage_done({"stage": "skills", "stage_index": 1, "stage_seconds": 1.5})
    status = live.fail(KeyboardInterrupt())
    (path,) = offline_runs(tmp_path)
    assert status.startswith("tracking: W&B offline run") and status.endswith(
        "(marked failed: KeyboardInterrupt)"
    )
    run = read_offline_run(path)
    assert run.exit_code == 1
    assert [(r["stage"], r["stage_seconds"]) for r in run.history] == [("skills", 1.5)]
