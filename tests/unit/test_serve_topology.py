"""serve.topology and serve.deployments (config), and the per-expert executor over stand-in deployment
handles (no Ray): one call per model per stage, a failed call retried scheduler.max_retries times, a hung
replica's call timed out, failures counted."""

from __future__ import annotations

import pytest

from skillmoe_ray.config.serving import deployment_options
from skillmoe_ray.engines.base import GenOutput, GenRequest, Sampling
from skillmoe_ray.errors import ConfigError
from skillmoe_ray.scheduling.grouping import ExpertGroup
from tests.conftest import make_config


def test_each_model_gets_the_default_options_with_its_own_entry_over_them(tmp_path):
    cfg = make_config(tmp_path, ["serve.topology=per_expert",
                                 "+serve.deployments.tiny-llama-a.num_replicas=2",
                                 "serve.deployments.default.ray_actor_options={resources: {node_a: 1}}"])
    own, other = deployment_options(cfg.serve, "tiny-llama-a"), deployment_options(cfg.serve, "tiny-qwen-b")
    assert (own.num_replicas, other.num_replicas) == (2, 1)
    assert own.ray_actor_options == other.ray_actor_options == {"resources": {"node_a": 1}}
    assert cfg.serve.router.num_replicas == 1 and make_config(tmp_path).serve.topology == "single"


@pytest.mark.parametrize("override, message", [
    ("serve.topology=wide", "serve.topology must be one of single, per_expert"),
    ("+serve.deployments.nope.num_replicas=2", "serve.deployments.nope: not a pool model"),
    ("+serve.deployments.tiny-llama-a.replicas=2", "unknown key serve.deployments.tiny-llama-a.replicas"),
    ("serve.deployments.default.autoscaling_config={min_replicas: 3, max_replicas: 2}",
     "serve.deployments.default.autoscaling_config: Value error, max_replicas (2) must be greater"),
    ("serve.router.num_replicas=0", "serve.router: num_replicas and max_ongoing_requests must be >= 1"),
])
def test_bad_topology_settings_fail_in_one_line_naming_the_key(tmp_path, override, message):
    with pytest.raises(ConfigError) as failed:
        make_config(tmp_path, [override])
    assert message in str(failed.value) and "\n" not in str(failed.value)


class Call:
    """A stand-in DeploymentResponse: the method's result, or its exception, when asked for."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def result(self, timeout_s=None):
        return self.fn(*self.args)

    def cancel(self):
        pass


class Method:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args):
        return Call(self.fn, args)


class StubDeployment:
    """A model deployment's handle whose first ``failures`` generate calls fail (a replica that died)."""

    def __init__(self, name: str, failures: int = 0):
        self.deployment_name = f"model-{name}"
        self.failures = failures
        self.calls: list[int] = []  # requests per generate call
        self.generate = Method(self._generate)
        self.where = Method(lambda: {"model": name})

    def _generate(self, requests):
        self.calls.append(len(requests))
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the replica died")
        return [GenOutput(f"{self.deployment_name}:{r.tag}") for r in requests]


def requests(n: int) -> list[GenRequest]:
    return [GenRequest.make([{"role": "user", "content": f"q{i}"}], Sampling(4), f"t{i}") for i in range(n)]


def run(executor, groups):
    done, failed = {}, {}
    executor.run_stage("answer", groups, [], lambda g, outs, s: done.update({g.expert: outs}),
                       lambda g, exc: failed.update({g.expert: exc}))
    return done, failed


def test_each_model_is_called_once_per_stage_and_a_failed_call_is_retried():
    from skillmoe_ray_actors.serve_experts import DeploymentExecutor

    handles = {"a": StubDeployment("a"), "b": StubDeployment("b", failures=1), "c": StubDeployment("c", 2)}
    executor = DeploymentExecutor(handles, max_retries=1)
    assert sorted(executor.warm(list(handles))) == ["a", "b", "c"]
    done, failed = run(executor, [ExpertGroup(name, requests(3)) for name in handles])
    assert handles["a"].calls == [3]  # the model's whole group in one call
    assert handles["b"].calls == [3, 3]
    assert [o.text for o in done["b"]] == ["model-b:t0", "model-b:t1", "model-b:t2"]
    assert handles["c"].calls == [3, 3] and set(failed) == {"c"}  # retried once, then the requests fail
    stats = executor.deployment_stats()
    assert {name: (s["calls"], s["failures"], s["in_flight"]) for name, s in stats.items()} == {
        "a": (1, 0, 0), "b": (2, 1, 0), "c": (2, 2, 0)}
    assert executor.generate_calls == 5 and sorted(executor.resident_experts()) == ["a", "b"]  # c left


def test_serve_options_take_replicas_or_autoscaling_and_default_the_actor_options():
    from skillmoe_ray.config.serving import DeploymentOptions
    from skillmoe_ray_actors.serve_experts import serve_options

    fixed = serve_options(DeploymentOptions(num_replicas=3), gpus=0.01, quiet_env={"X": "1"})
    assert fixed == {"num_replicas": 3, "max_ongoing_requests": 4, "ray_actor_options": {
        "num_cpus": 0, "num_gpus": 0.01, "runtime_env": {"env_vars": {"X": "1"}}}}
    auto = serve_options(DeploymentOptions(autoscaling_config={"min_replicas": 1, "max_replicas": 2},
                                           ray_actor_options={"num_gpus": 1, "resources": {"node_b": 0.01}}))
    assert "num_replicas" not in auto and auto["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 2}
    assert auto["ray_actor_options"] == {"num_cpus": 0, "num_gpus": 1, "resources": {"node_b": 0.01}}


class HungCall(Call):
    """A call to a replica that never answers: it times out, if the caller gave it a timeout."""

    cancelled = 0

    def result(self, timeout_s=None):
        assert timeout_s is not None, "a call without a timeout waits forever on a hung replica"
        raise TimeoutError

    def cancel(self):
        HungCall.cancelled += 1


class HungDeployment(StubDeployment):
    def __init__(self, name: str):
        super().__init__(name)
        self.generate.remote = lambda requests: (self.calls.append(len(requests)), HungCall(None, ()))[1]


def test_a_call_to_a_hung_replica_fails_after_the_timeout_and_is_cancelled():
    from skillmoe_ray_actors.serve_experts import DeploymentExecutor

    HungCall.cancelled = 0
    handles = {"a": StubDeployment("a"), "hung": HungDeployment("hung")}
    executor = DeploymentExecutor(handles, max_retries=0, call_timeout_s=5.0)
    done, failed = run(executor, [ExpertGroup(name, requests(2)) for name in handles])
    assert set(done) == {"a"} and set(failed) == {"hung"}
    assert "deployment model-hung did not answer a call of 2 requests in 5 s" in str(failed["hung"])
    assert handles["hung"].calls == [2] and HungCall.cancelled == 1
    assert executor.deployment_stats()["hung"]["failures"] == 1


def test_a_timed_out_call_is_not_retried_its_clients_have_had_their_504():
    from skillmoe_ray_actors.serve_experts import DeploymentExecutor

    HungCall.cancelled = 0
    handles = {"hung": HungDeployment("hung")}
    executor = DeploymentExecutor(handles, max_retries=2, call_timeout_s=5.0)
    done, failed = run(executor, [ExpertGroup("hung", requests(3))])
    assert not done and set(failed) == {"hung"}
    assert handles["hung"].calls == [3] and HungCall.cancelled == 1  # one call, not 1 + max_retries


@pytest.mark.parametrize("max_retries", [0, 1, 2])
def test_a_failed_call_is_retried_scheduler_max_retries_times(max_retries):
    from skillmoe_ray_actors.serve_experts import DeploymentExecutor

    handles = {"a": StubDeployment("a", failures=10)}
    done, failed = run(DeploymentExecutor(handles, max_retries=max_retries), [ExpertGroup("a", requests(2))])
    assert handles["a"].calls == [2] * (1 + max_retries) and set(failed) == {"a"} and not done


def test_the_answerer_gives_its_executor_the_configured_retries_and_timeout(tmp_path):
    from skillmoe_ray_actors.serve_answerer import pool_executor

    cfg = make_config(tmp_path, ["serve.topology=per_expert", "scheduler.max_retries=0",
                                 "serve.request_timeout_s=30"])
    executor = pool_executor(cfg, {"a": StubDeployment("a")})
    assert executor.policy.max_retries == 0 and executor.call_timeout_s == 30.0


def test_an_answer_carries_the_counters_and_only_stats_ask_the_deployments():
    """Asking Serve's controller and every model's deployment once per answered request held per_expert to
    a sixth of single's requests/s: an answer carries the answerer's own counters only."""
    import asyncio
    from types import SimpleNamespace

    from skillmoe_ray.serving.openai_api import Job
    from skillmoe_ray.serving.router import Outcome
    from skillmoe_ray_actors.serve_answerer import SkillMoEAnswerer
    from skillmoe_ray_actors.serve_experts import DeploymentExecutor

    asked = []
    executor = DeploymentExecutor({"a": StubDeployment("a")})
    executor.deployment_stats = lambda: asked.append(1) or {"a": {"replicas": 1}}

    async def submit(job):
        return Outcome(200, content="A")

    cls = SkillMoEAnswerer.func_or_class
    answerer = cls.__new__(cls)
    answerer.scheduler, answerer.used, answerer.failure_streak = executor, ["a"], 0
    answerer.generation = SimpleNamespace(store_failures=0)
    answerer.batcher = SimpleNamespace(submit=submit, retry_after=lambda: 1.0,
                                       stats=SimpleNamespace(batches=1, largest_batch=1))

    async def answer_then_stats():
        replies = [r async for r in answerer.answer(Job("r1", "symbolic-moe", "skillmoe", 1, "q?"))]
        return replies, await answerer.stats()

    replies, stats = asyncio.run(answer_then_stats())
    outcome, counters = replies[-1]
    assert outcome.content == "A" and "deployments" not in counters and counters["batches"] == 1
    assert stats["deployments"] == {"a": {"replicas": 1}} and len(asked) == 1
