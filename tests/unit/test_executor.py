"""SlotExecutor: one activation per expert per stage, residency across stages, sleep vs unload."""

from __future__ import annotations

import json

import pytest

from skillmoe_ray.config import ModelSpec
from skillmoe_ray.engines.base import GenRequest, Sampling
from skillmoe_ray.engines.fake import FakeEngine
from skillmoe_ray.scheduling.executor import SlotExecutor
from skillmoe_ray.scheduling.grouping import ExpertGroup
from skillmoe_ray.scheduling.handles import LocalExpert
from skillmoe_ray.scheduling.policy import ExecutionPolicy
from tests.conftest import max_concurrency


class CountingEngine(FakeEngine):
    """The fake engine, counting lifecycle calls and reporting a weight size."""

    calls: list = []
    sleepable = True

    @property
    def can_sleep(self) -> bool:
        return self.sleepable

    def _load(self):
        self.calls.append(("load", self.spec.name))
        self.info.weight_bytes = 10

    def _sleep(self):
        self.calls.append(("sleep", self.spec.name))

    def _wake(self):
        self.calls.append(("wake", self.spec.name))

    def _unload(self):
        self.calls.append(("unload", self.spec.name))


def executor(sleepable=True, host_ram_bytes=float("inf"), n_slots=1):
    CountingEngine.calls = []
    CountingEngine.sleepable = sleepable
    return SlotExecutor(
        lambda name, slot=0: LocalExpert(CountingEngine(ModelSpec(name=name, path=f"fake/{name}"))),
        ExecutionPolicy(n_slots=n_slots, host_ram_bytes=host_ram_bytes),
    )


def groups(*experts):
    return [
        ExpertGroup(e,
                    [GenRequest.make([{"role": "user", "content": f"Question: {e}{i}"}], Sampling(8),
                                     f"{e}/{i}") for i in range(2)])
        for e in experts
    ]


def test_each_expert_runs_its_whole_group_in_one_activation():
    ex = executor()
    done = []
    ex.run_stage("s1", groups("a", "b", "c"), [], lambda g, outs, t: done.append((g.expert, len(outs))))
    assert sorted(done) == [("a", 2), ("b", 2), ("c", 2)]
    assert ex.stage_activations["s1"] == {"a": 1, "b": 1, "c": 1}
    assert ex.generate_calls == 3


def test_timeline_never_overlaps_on_one_slot():
    ex = executor()
    ex.run_stage("s1", groups("a", "b", "c"), [], lambda g, o, t: None)
    spans = sorted((t.start, t.end) for t in ex.timeline)
    assert all(prev[1] <= nxt[0] for prev, nxt in zip(spans, spans[1:]))


def test_expert_needed_next_stays_resident_across_the_boundary():
    ex = executor()
    ex.run_stage("s1", groups("a", "b"), ["a"], lambda g, o, t: None)
    assert ex.timeline[-1].expert == "a"
    ex.run_stage("s2", groups("a", "c"), [], lambda g, o, t: None)
    assert [(t.stage, t.expert, t.kind) for t in ex.timeline][2] == ("s2", "a", "resident")
    assert "a" not in ex.stage_activations["s2"]


def test_deactivation_sleeps_when_the_engine_can():
    ex = executor(sleepable=True)
    ex.run_stage("s1", groups("a", "b"), [], lambda g, o, t: None)
    ex.run_stage("s2", groups("a"), [], lambda g, o, t: None)
    assert ("sleep", "a") in CountingEngine.calls and ("wake", "a") in CountingEngine.calls
    assert CountingEngine.calls.count(("load", "a")) == 1
    assert [t.kind for t in ex.timeline] == ["load", "load", "wake"]


@pytest.mark.parametrize("sleepable, host_ram_bytes", [(False, float("inf")), (True, 5)])
def test_deactivation_unloads_when_sleep_is_unavailable_or_ram_is_short(sleepable, host_ram_bytes):
    ex = executor(sleepable=sleepable, host_ram_bytes=host_ram_bytes)
    ex.run_stage("s1", groups("a", "b"), [], lambda g, o, t: None)
    ex.run_stage("s2", groups("a"), [], lambda g, o, t: None)
    assert ("unload", "a") in CountingEngine.calls
    assert CountingEngine.calls.count(("load", "a")) == 2


def test_an_expert_no_later_stage_needs_is_unloaded_so_a_needed_one_can_sleep():
    """Host RAM for one sleeper: ``a`` is never needed again, so ``b`` (needed in s2) gets the room."""
    ex = executor(host_ram_bytes=10)
    ex.run_stage("s1", groups("a", "b", "c"), [], lambda g, o, t: None, later=["b"])
    assert ("unload", "a") in CountingEngine.calls and ("sleep", "b") in CountingEngine.calls
    ex.run_stage("s2", groups("b"), [], lambda g, o, t: None, later=[])
    assert [t.kind for t in ex.timeline] == ["load", "load", "load", "wake"]
    assert ex.summary().deactivations == {"unload": 2, "sleep": 1}  # c, never needed again, is unloaded too


def test_without_knowing_later_stages_every_expert_sleeps_and_sleep_policy_always_sleeps():
    ex = executor()
    ex.run_stage("s1", groups("a", "b"), [], lambda g, o, t: None)
    assert ("sleep", "a") in CountingEngine.calls
    ex = SlotExecutor(lambda name,
                      slot=0: LocalExpert(CountingEngine(ModelSpec(name=name, path=f"fake/{name}"))),
                      ExecutionPolicy(deactivate="sleep"))
    CountingEngine.calls = []
    ex.run_stage("s1", groups("a", "b"), [], lambda g, o, t: None, later=[])
    assert ("sleep", "a") in CountingEngine.calls and ("unload", "a") not in CountingEngine.calls


def test_close_unloads_everything():
    ex = executor()
    ex.run_stage("s1", groups("a", "b"), [], lambda g, o, t: None)
    ex.close()
    assert ("unload", "b") in CountingEngine.calls
    assert ex.slots.copies == {}


def test_a_wake_that_corrupts_weights_is_caught_by_the_probe_and_reloaded():
    spec = lambda n: ModelSpec(name=n, path=f"fake/{n}")  # noqa: E731
    ex = SlotExecutor(lambda n, slot=0: LocalExpert(FakeEngine(spec(n), {"corrupt_on_wake": True})))
    ex.run_stage("s1", groups("a", "b"), [], lambda g, o, t: None)
    ex.run_stage("s2", groups("a"), [], lambda g, o, t: None)
    entry = ex.timeline[-1]
    assert entry.kind == "reload" and "warmup_probe" in entry.phases and "load" in entry.phases


def test_a_clean_wake_passes_the_probe():
    ex = SlotExecutor(lambda n, slot=0: LocalExpert(FakeEngine(ModelSpec(name=n, path=f"fake/{n}"))))
    ex.run_stage("s1", groups("a", "b"), [], lambda g, o, t: None)
    ex.run_stage("s2", groups("a"), [], lambda g, o, t: None)
    assert ex.timeline[-1].kind == "wake"


def test_the_next_expert_reads_its_weights_ahead_while_one_generates():
    prefetched = []

    class Recording(FakeEngine):
        def prefetch(self):
            prefetched.append(self.spec.name)
            return 0

    ex = SlotExecutor(lambda n, slot=0: LocalExpert(Recording(ModelSpec(name=n, path=f"fake/{n}"))))
    ex.run_stage("s1", groups("a", "b", "c"), [], lambda g, o, t: None)
    order = [t.expert for t in ex.timeline]
    import time

    time.sleep(0.1)  # read-ahead runs in a background thread
    assert sorted(prefetched) == sorted(order[1:])


@pytest.mark.parametrize("slots", [2, 4])
def test_several_slots_run_in_parallel_never_two_experts_on_one_slot(slots):
    import time

    class Slow(FakeEngine):
        def _generate(self, requests):
            time.sleep(0.05)
            return super()._generate(requests)

    ex = SlotExecutor(lambda n, slot=0: LocalExpert(Slow(ModelSpec(name=n, path=f"fake/{n}"))),
                      ExecutionPolicy(n_slots=slots))
    done = []
    ex.run_stage("s1", groups(*"abcdefgh"), [], lambda g, o, t: done.append(g.expert))
    assert sorted(done) == list("abcdefgh") and ex.stage_activations["s1"] == {e: 1 for e in "abcdefgh"}
    by_slot = {}
    for t in ex.timeline:
        by_slot.setdefault(t.slot, []).append((t.start, t.end))
    assert len(by_slot) == slots
    for spans in by_slot.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert max_concurrency([t.to_json() for t in ex.timeline]) == slots




def test_a_dominant_group_runs_on_replicas_in_parallel_and_every_request_once():
    import time

    class Slow(FakeEngine):
        def _generate(self, requests):
            time.sleep(0.01 * len(requests))
            return super()._generate(requests)

    ex = SlotExecutor(lambda n, slot=0: LocalExpert(Slow(ModelSpec(name=n, path=f"fake/{n}"))),
                      ExecutionPolicy(n_slots=4, max_replicas=4, replica_min_requests=4))
    big = ExpertGroup("a",
                      [GenRequest.make([{"role": "user", "content": f"Q{i}"}], Sampling(8),
                                       f"a/{i}") for i in range(32)])
    answered = []
    ex.run_stage("s1", [big, *groups("b", "c")], [], lambda g, outs,
                 t: answered.extend(r.tag for r in g.requests))
    assert sorted(answered) == sorted([f"a/{i}" for i in range(32)] + ["b/0", "b/1", "c/0", "c/1"])
    a_slots = {t.slot for t in ex.timeline if t.expert == "a"}
    assert len(a_slots) == 4 and 1 < max_concurrency([t.to_json() for t in ex.timeline]) <= 4
    assert {t.replica for t in ex.timeline if t.expert == "a"} == {0, 1, 2, 3}
    ex.run_stage("s2", groups("c", "d"), [], lambda g, o, t: None, later=[])
    # replicas never sleep
    assert not any(e.startswith("a#") and c.state == "sleeping" for e, c in ex.slots.copies.items())


def test_experts_keep_their_home_slot_across_stages():
    ex = SlotExecutor(lambda n, slot=0: LocalExpert(FakeEngine(ModelSpec(name=n, path=f"fake/{n}"))),
                      ExecutionPolicy(n_slots=2))
    ex.run_stage("s1", groups("a", "b", "c", "d"), [], lambda g, o, t: None)
    first = {t.expert: t.slot for t in ex.timeline}
    ex.run_stage("s2", groups("a", "b", "c", "d"), [], lambda g, o, t: None)
    second = {t.expert: t.slot for t in ex.timeline if t.stage == "s2"}
    assert second == first


def test_follow_up_groups_start_on_a_free_slot_before_the_slowest_group_ends():
    """The aggregator starts on instances whose experts are done, on the slot that became free."""
    import time

    class Timed(FakeEngine):
        def _generate(self, requests):
            time.sleep(0.05 * len(requests))
            return super()._generate(requests)

    def group(expert, n):
        reqs = [GenRequest.make([{"role": "user", "content": f"Question: {expert}{i}"}], Sampling(8),
                                f"{expert}/{i}")
                for i in range(n)]
        return ExpertGroup(expert, reqs)

    ex = SlotExecutor(lambda n, slot=0: LocalExpert(Timed(ModelSpec(name=n, path=f"fake/{n}"))),
                      ExecutionPolicy(n_slots=2))
    finished, released = [], []

    def followup():
        ready = [e for e in finished if e not in released]
        released.extend(ready)
        return [ExpertGroup("agg", group(f"after-{e}", 1).requests, stage="aggregation") for e in ready]

    def done(g, outputs, seconds):
        if g.expert != "agg":
            finished.append(g.expert)

    ex.run_stage("s1", [group("a", 8), group("b", 1), group("c", 1), group("d", 1)], [], done,
                 followup=followup)
    agg = [t for t in ex.timeline if t.expert == "agg"]
    slow = next(t for t in ex.timeline if t.expert == "a")
    assert len(agg) >= 1 and sum(t.requests for t in agg) == 4
    assert {t.stage for t in agg} == {"aggregation"} and len({t.slot for t in agg}) == 1
    assert min(t.start for t in agg) < slow.end  # streamed, not after a barrier


class DyingEngine(CountingEngine):
    """Fails the first ``deaths`` generate calls of the class, as an expert whose actor died would."""

    deaths = 0

    def _generate(self, requests):
        if DyingEngine.deaths > 0:
            DyingEngine.deaths -= 1
            raise RuntimeError("The actor died unexpectedly before finishing this task")
        return super()._generate(requests)


def dying_executor(deaths: int, max_retries: int):
    CountingEngine.calls = []
    DyingEngine.deaths = deaths
    return SlotExecutor(lambda name,
                        slot=0: LocalExpert(DyingEngine(ModelSpec(name=name, path=f"fake/{name}"))),
                        ExecutionPolicy(max_retries=max_retries))


def test_a_group_whose_expert_dies_is_retried_on_a_fresh_expert_and_the_retry_is_in_the_timeline():
    ex = dying_executor(deaths=1, max_retries=2)
    done = []
    ex.run_stage("profiles", groups("a", "b"), [], lambda g, outs, t: done.append((g.expert, len(outs))))
    assert done == [("a", 2), ("b", 2)]
    entry = next(t for t in ex.timeline if t.expert == "a")
    assert len(entry.retries) == 1 and "actor died" in entry.retries[0].error
    assert not next(t for t in ex.timeline if t.expert == "b").retries
    assert [c for c in CountingEngine.calls if c == ("load", "a")] == [("load", "a")] * 2  # a fresh expert


def test_after_its_retries_a_dying_expert_stops_the_run_with_one_error_naming_expert_stage_and_cause():
    from skillmoe_ray.errors import ExpertFailed

    ex = dying_executor(deaths=5, max_retries=1)
    done = []
    with pytest.raises(ExpertFailed, match=r"expert a failed in stage inference after 2 attempt\(s\): "
                                           r"RuntimeError: The actor died"):
        ex.run_stage("inference", groups("a", "b"), [], lambda g, outs, t: done.append(g.expert))
    assert done == []
    failed = []
    ex = dying_executor(deaths=1, max_retries=0)  # serving: the error handler answers those requests
    ex.run_stage(
        "online",
        groups("a", "b"),
        [],
        lambda g, outs, t: done.append(g.expert),
        lambda g, e: failed.append(g.expert),
    )
    assert failed == ["a"] and done == ["b"]


def test_a_dead_resident_leaves_the_slot_instead_of_blocking_every_later_expert():
    ex = executor()
    ex.run_stage("s1", groups("a"), [], lambda g, outs, t: None)
    dead = ex.slots.copies["a"].handle
    dead.info = lambda: (_ for _ in ()).throw(RuntimeError("actor died"))  # deactivating it fails
    done = []
    ex.run_stage("s2", groups("b"), [], lambda g, outs, t: done.append(g.expert))
    assert done == ["b"] and ex.resident_experts() == ["b"] and ex.slots.copies["a"].handle is None
    ex.run_stage("s3", groups("a"), [], lambda g, outs, t: done.append(g.expert))
    assert done == ["b", "a"] and ex.slots.copies["a"].handle is not dead  # recreated on next use


def test_the_summary_and_its_timeline_serialize_to_the_dicts_results_json_has_always_held():
    """results.json and the measurements files are unchanged: same keys, same order, optional ones if set."""
    ex = dying_executor(deaths=1, max_retries=1)
    ex.run_stage("s1", groups("a", "b"), [], lambda g, outs, t: None)
    data = ex.summary().to_json()
    assert list(data) == [
        "activations",
        "activations_per_stage",
        "deactivations",
        "generate_calls",
        "timeline",
    ]
    assert data["activations"] == {"a": 1, "b": 1}
    assert data["activations_per_stage"] == {"s1": {"a": 1, "b": 1}}
    entry = next(t for t in data["timeline"] if t["expert"] == "a")
    assert list(entry) == [
        "expert",
        "stage",
        "slot",
        "start",
        "end",
        "kind",
        "activation_seconds",
        "phases",
        "requests",
        "chunks",
        "prompt_tokens",
        "output_tokens",
        "retries",
    ]
    assert list(entry["retries"][0]) == ["start", "end", "error"]
    assert "retries" not in next(t for t in data["timeline"] if t["expert"] == "b")
    assert json.loads(json.dumps(data)) == data


def test_a_runs_config_becomes_one_execution_policy(tmp_path):
    from skillmoe_ray.scheduling.policy import execution_policy
    from tests.conftest import make_config

    cfg = make_config(
        tmp_path,
        [
            "resources.gpus=2",
            "scheduler.max_retries=3",
            "scheduler.chunk_requests=5",
            "scheduler.deactivate=unload",
            "resources.gpu_memory_gb=40",
        ],
    )
    policy = execution_policy(cfg)
    assert (policy.n_slots, policy.max_retries, policy.chunk_requests) == (2, 3, 5)
    assert policy.deactivate == "unload"
    assert policy.gpu_memory_bytes == 40e9 and policy.host_ram_bytes == cfg.resources.host_ram_bytes
    assert policy.probe_after_wake == cfg.scheduler.probe_after_wake
    assert policy.max_replicas == cfg.scheduler.max_replicas
    assert policy.footprint(next(iter(cfg.pool)), 1000) > 0


def test_an_expert_starting_to_load_gets_a_line_and_fast_chunks_get_none(caplog):
    """Before a load the output says which expert loads (it may take a minute); a fast stage stored in
    many chunks does not print a line per chunk."""
    CountingEngine.calls = []

    def open_expert(name, slot=0):
        return LocalExpert(CountingEngine(ModelSpec(name=name, path=f"fake/{name}")))

    ex = SlotExecutor(open_expert, ExecutionPolicy(n_slots=1, chunk_requests=1))
    with caplog.at_level("INFO", logger="skillmoe_ray.scheduling.executor"):
        ex.run_stage("s1", groups("a", "b"), ["b"], lambda g, o, t: None)
        ex.run_stage("s2", groups("b"), [], lambda g, o, t: None)
    lines = [r.getMessage() for r in caplog.records]
    assert [line for line in lines if ": loading on slot" in line] == [
        "[s1] expert a: loading on slot 0",
        "[s1] expert b: loading on slot 0",
    ]
    assert not [line for line in lines if "[s2]" in line and "loading" in line]  # b stayed resident
    assert not [line for line in lines if "chunk" in line and "stored" in line]
    loading = lines.index("[s1] expert a: loading on slot 0")
    assert lines[loading + 1].startswith("[s1] expert a active on slot 0")
