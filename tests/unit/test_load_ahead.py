"""Load-ahead: a slot's next cold expert loads while the one before it generates, where the budget allows."""

from __future__ import annotations

import dataclasses
import tempfile
import threading
from pathlib import Path

from skillmoe_ray.config import ModelSpec
from skillmoe_ray.scheduling.executor import SlotExecutor
from skillmoe_ray.scheduling.handles import LocalExpert
from skillmoe_ray.scheduling.policy import ExecutionPolicy
from skillmoe_ray.scheduling.residency import ALWAYS_NEEDED
from tests.unit.test_executor import CountingEngine, groups


class OverlapEngine(CountingEngine):
    """Records, for each generate call, which loads had begun before it returned.

    A generate waits (bounded) for the load of ``awaited`` to begin, so that a load-ahead in another thread is
    seen to start while the generation is still running; without a load-ahead the wait runs out."""

    events: list = []
    awaited: dict[str, str] = {}  # generating expert -> the expert whose load it waits for
    load_began: dict[str, threading.Event] = {}
    failing_loads: set[str] = set()
    wait_s = 10.0  # the bound on that wait: never reached when a load-ahead runs

    def _load(self):
        name = self.spec.name
        self.events.append(("load", name))
        OverlapEngine.load_began.setdefault(name, threading.Event()).set()
        if name in self.failing_loads:
            self.failing_loads.discard(name)  # fails once
            raise RuntimeError(f"{name}: simulated load failure")
        super()._load()

    def _generate(self, requests):
        name = self.spec.name
        if name in self.awaited:
            OverlapEngine.load_began.setdefault(self.awaited[name], threading.Event()).wait(self.wait_s)
        self.events.append(("generated", name))
        return super()._generate(requests)


def overlap_executor(gpu_memory_bytes, load_ahead=True, awaited=None, failing=(), wait_s=10.0, loads=True):
    OverlapEngine.wait_s, OverlapEngine.sleepable = wait_s, True
    OverlapEngine.calls, OverlapEngine.events, OverlapEngine.load_began = [], [], {}
    OverlapEngine.awaited, OverlapEngine.failing_loads = dict(awaited or {}), set(failing)
    return SlotExecutor(
        lambda name, slot=0: LocalExpert(OverlapEngine(ModelSpec(name=name, path=f"fake/{name}"))),
        ExecutionPolicy(gpu_memory_bytes=gpu_memory_bytes, load_ahead=load_ahead, load_ahead_loads=loads,
                        footprint=lambda expert, weight_bytes: float(weight_bytes or 10)),
    )


def texts(outputs):
    return [o.text for o in outputs]


def run(ex, *experts, stage="s1"):
    done = {}
    ex.run_stage(stage, groups(*experts), [], lambda g, outs, t: done.update({g.expert: texts(outs)}))
    return done


def test_the_next_expert_loads_while_the_current_one_generates():
    ex = overlap_executor(20, awaited={"a": "b"})  # a's generation waits for b's load to begin
    run(ex, "a", "b")
    assert OverlapEngine.events.index(("load", "b")) < OverlapEngine.events.index(("generated", "a"))
    assert ex.summary().loads_ahead == 1 and ex.summary().to_json()["loads_ahead"] == 1
    assert [(t.expert, t.kind) for t in ex.timeline] == [("a", "load"), ("b", "load")]
    assert sum(ex.activations.values()) == 2 and sorted(ex.resident_experts()) == ["a", "b"]


def test_the_answers_are_those_of_the_plain_order():
    ahead = run(overlap_executor(20), "a", "b", "c")
    plain = run(overlap_executor(20, load_ahead=False), "a", "b", "c")
    assert ahead == plain and set(ahead) == {"a", "b", "c"}


def test_without_room_beside_the_generating_expert_nothing_loads_ahead():
    for budget in (None, 10):  # one model per slot; a budget that holds one
        ex = overlap_executor(budget, awaited={"a": "b"}, wait_s=0.5)  # the wait runs out here
        run(ex, "a", "b")
        assert OverlapEngine.events.index(("generated", "a")) < OverlapEngine.events.index(("load", "b"))
        assert ex.summary().loads_ahead == 0


def test_a_load_ahead_evicts_only_what_the_stage_no_longer_needs():
    ex = overlap_executor(20)
    run(ex, "a", "b", "c")  # while b generates, c loads ahead in a's place; a was done
    assert ex.summary().loads_ahead == 2
    assert sorted(ex.resident_experts()) == ["b", "c"]
    assert [call for call in OverlapEngine.calls if call[0] != "load"] == [("sleep", "a")]


def test_a_model_every_request_needs_is_never_evicted_for_a_load_ahead():
    ex = overlap_executor(20)
    run(ex, "k")
    ex.slots.rank = {"k": ALWAYS_NEEDED}  # the keyword model, online
    run(ex, "a", "b", stage="s2")  # b fits only in k's place (a generates): it loads in its turn instead
    assert ex.summary().loads_ahead == 0
    assert "k" in ex.resident_experts()


def test_a_failed_load_ahead_is_loaded_again_when_its_group_runs():
    ex = overlap_executor(20, failing={"b"})
    done = run(ex, "a", "b")
    assert set(done) == {"a", "b"} and ex.summary().loads_ahead == 1
    assert [e for e in OverlapEngine.events if e == ("load", "b")] == [("load", "b")] * 2
    assert ex.timeline[-1].kind == "load" and "b" in ex.resident_experts()


def test_where_engines_size_themselves_at_start_a_load_ahead_only_wakes(monkeypatch):
    """vLLM on CUDA sizes a starting engine from the GPU's free memory: no fresh start runs beside another
    engine's generation; a sleeping expert still wakes ahead."""
    ex = overlap_executor(20, loads=False)
    run(ex, "a", "b")  # b starts from disk in its turn
    assert ex.summary().loads_ahead == 0
    run(ex, "c", stage="s2")  # c evicts one of them, which sleeps (the fake engine can)
    asleep = ({"a", "b"} - set(ex.resident_experts())).pop()
    run(ex, "c", asleep, stage="s3")
    assert ex.summary().loads_ahead == 1 and ex.timeline[-1].kind == "wake"

    from skillmoe_ray.scheduling import policy
    from tests.conftest import make_config

    cfg = make_config(Path(tempfile.mkdtemp()), [])
    for machine, engine, wakes_only in [(("cuda", 8e10), "vllm", True), (("cpu", 8e10), "vllm", False),
                                        (("cuda", 8e10), "hf", False)]:
        monkeypatch.setattr(policy, "machine_memory", lambda machine=machine: machine)
        with_engine = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, name=engine))
        assert policy.profiles_device_memory_at_start(with_engine) == wakes_only


def test_a_load_ahead_never_evicts_a_model_recruited_more_than_the_one_it_brings():
    """Online the popular expert stays: when only it could make room, the rare one loads in its turn instead
    (evicting by the plain rule then)."""
    ex = overlap_executor(20)
    run(ex, "a", "b")
    ex.slots.rank = {"a": 5.0, "b": 1.0, "c": 1.0}
    assert ex.slots.plan_ahead(0, "c", "c", set(), None) is not None  # b, ranked as low as c, makes room
    assert ex.slots.plan_ahead(0, "c", "c", {"b"}, None) is None  # only a could, ranked above c
    assert sorted(ex.resident_experts()) == ["a", "b"]  # deciding evicts nothing
