"""SlotExecutor: one activation per expert per stage, residency across stages, sleep vs unload."""

from __future__ import annotations

import pytest

from skillmoe_ray.config import ModelSpec
from skillmoe_ray.engines.base import GenRequest, Sampling
from skillmoe_ray.engines.fake import FakeEngine
from skillmoe_ray.executor import LocalExpert, SlotExecutor
from skillmoe_ray.plan import ExpertGroup


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
        lambda name: LocalExpert(CountingEngine(ModelSpec(name=name, path=f"fake/{name}"))),
        n_slots=n_slots,
        host_ram_bytes=host_ram_bytes,
    )


def groups(*experts):
    return [
        ExpertGroup(e, [GenRequest.make([{"role": "user", "content": f"Question: {e}{i}"}], Sampling(8), f"{e}/{i}") for i in range(2)])
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
    spans = sorted((t["start"], t["end"]) for t in ex.timeline)
    assert all(prev[1] <= nxt[0] for prev, nxt in zip(spans, spans[1:]))


def test_expert_needed_next_stays_resident_across_the_boundary():
    ex = executor()
    ex.run_stage("s1", groups("a", "b"), ["a"], lambda g, o, t: None)
    assert ex.timeline[-1]["expert"] == "a"
    ex.run_stage("s2", groups("a", "c"), [], lambda g, o, t: None)
    assert [(t["stage"], t["expert"], t["kind"]) for t in ex.timeline][2] == ("s2", "a", "resident")
    assert "a" not in ex.stage_activations["s2"]


def test_deactivation_sleeps_when_the_engine_can():
    ex = executor(sleepable=True)
    ex.run_stage("s1", groups("a", "b"), [], lambda g, o, t: None)
    ex.run_stage("s2", groups("a"), [], lambda g, o, t: None)
    assert ("sleep", "a") in CountingEngine.calls and ("wake", "a") in CountingEngine.calls
    assert CountingEngine.calls.count(("load", "a")) == 1
    assert [t["kind"] for t in ex.timeline] == ["load", "load", "wake"]


@pytest.mark.parametrize("sleepable, host_ram_bytes", [(False, float("inf")), (True, 5)])
def test_deactivation_unloads_when_sleep_is_unavailable_or_ram_is_short(sleepable, host_ram_bytes):
    ex = executor(sleepable=sleepable, host_ram_bytes=host_ram_bytes)
    ex.run_stage("s1", groups("a", "b"), [], lambda g, o, t: None)
    ex.run_stage("s2", groups("a"), [], lambda g, o, t: None)
    assert ("unload", "a") in CountingEngine.calls
    assert CountingEngine.calls.count(("load", "a")) == 2


def test_close_unloads_everything():
    ex = executor()
    ex.run_stage("s1", groups("a", "b"), [], lambda g, o, t: None)
    ex.close()
    assert ("unload", "b") in CountingEngine.calls
    assert ex.handles == {}
