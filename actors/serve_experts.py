"""Per-expert serving (``serve.topology=per_expert``): each pool model a Ray Serve deployment of its own.

- :class:`ModelDeployment` is one model's engine (the same engine layer as an ExpertActor: vLLM,
  transformers, openai, fake), loaded before Serve counts the replica ready. Serve places its replicas
  (``ray_actor_options``: GPUs, a custom resource that pins it to nodes), replaces a dead one and
  autoscales it (``serve.deployments.<model>``, :func:`model_deployments`).
- :class:`DeploymentExpert` is the executor's handle of an expert (``ExpertHandle``) over the deployment's
  DeploymentHandle: generate is one call, the lifecycle is the deployment's own (nothing to load or sleep).
- :class:`DeploymentExecutor` is the library's SlotExecutor with one slot per model and every model
  resident: each micro-batch still makes one call per model it needs (its requests grouped by expert),
  the models' calls run side by side, and a call that fails (its replica died) is retried up to
  ``scheduler.max_retries`` times, after the deployment answers again, on the replica Serve routes it to
  (one it started in a dead one's place). A call with no answer in ``serve.request_timeout_s`` (a hung
  replica) is cancelled and not retried: every client it would answer has had its 504 by then.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections import Counter

from ray import serve
from ray.serve.handle import DeploymentHandle

from skillmoe_ray.config import EngineConfig, ModelSpec, RunConfig
from skillmoe_ray.config.serving import DeploymentOptions, deployment_options
from skillmoe_ray.engines import create_engine
from skillmoe_ray.engines.base import ACTIVE, EngineInfo, GenOutput, GenRequest
from skillmoe_ray.errors import PastDeadline
from skillmoe_ray.method.results import ServingPreparation
from skillmoe_ray.scheduling.executor import SlotExecutor
from skillmoe_ray.scheduling.handles import LocalExpert
from skillmoe_ray.scheduling.policy import ExecutionPolicy
from skillmoe_ray.scheduling.residency import engine_for_run
from skillmoe_ray_actors.placement import QUIET_ENGINE_ENV

log = logging.getLogger(__name__)
# Prefix of a model's deployment name (``model-<pool name>``)
DEPLOYMENT_PREFIX = "model-"
# Seconds a handle waits for its deployment to answer (first start, or a replica replaced after a death)
READY_WAIT_S = 120.0
# Seconds between tries while the deployment does not answer
READY_RETRY_S = 0.5
# Seconds the stats wait for a replica to say where it runs
WHERE_WAIT_S = 1.0


@serve.deployment(health_check_period_s=5)
class ModelDeployment:
    """One pool model's engine in a Serve replica, loaded at start; calls generate one at a time."""

    def __init__(self, spec: ModelSpec, engine: EngineConfig):
        logging.basicConfig(level=logging.WARNING)
        self.model = spec.name
        self.expert = LocalExpert(create_engine(engine, spec))
        self.expert.engine.prepare()
        self.expert.load()
        gc.freeze()  # the engine and its model live as long as the replica: the collector stops scanning them
        self.lock = threading.Lock()  # Serve runs sync methods in a thread pool: one generation at a time

    def generate(self, requests: list[GenRequest]) -> list[GenOutput]:
        with self.lock:
            return self.expert.generate(requests)

    def where(self) -> dict:
        """The model, node, process and replica answering (tests and /v1/stats see placement and restarts)."""
        import ray

        return {"model": self.model, "node": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
                "replica": serve.get_replica_context().replica_id.unique_id}

    def check_health(self) -> None:
        """Serve's health check: a replica whose engine is not loaded is replaced."""
        state = self.expert.engine.info.state
        if state != ACTIVE:
            raise RuntimeError(f"model {self.model}'s engine is {state}")


class DeploymentExpert:
    """An ExpertHandle over a model's deployment: one call per generate, counted in ``counts``, that fails
    after ``timeout_s`` without an answer (None: waits as long as it takes)."""

    def __init__(self, handle: DeploymentHandle, counts: Counter, lock: threading.Lock,
                 timeout_s: float | None = None):
        self.handle = handle
        self.counts = counts
        self.lock = lock
        self.timeout_s = timeout_s

    def _count(self, key: str, by: int = 1) -> None:
        with self.lock:
            self.counts[key] += by

    def load(self) -> dict:
        """Wait until the deployment answers (a replica is up: at start, or after Serve replaced one)."""
        start = time.perf_counter()
        deadline = time.monotonic() + READY_WAIT_S
        while True:
            try:
                self.handle.where.remote().result(timeout_s=READY_WAIT_S)
                return {"load": time.perf_counter() - start}
            except Exception as exc:  # a dead replica not yet replaced; the handle learns of the new one
                if time.monotonic() > deadline:
                    raise RuntimeError(f"deployment {self.handle.deployment_name} does not answer") from exc
                time.sleep(READY_RETRY_S)

    def generate(self, requests: list[GenRequest]) -> list[GenOutput]:
        self._count("calls")
        self._count("in_flight")
        response = self.handle.generate.remote(requests)
        try:
            return response.result(timeout_s=self.timeout_s)
        except TimeoutError:  # a hung replica: the micro-batch's thread is not held forever
            self._count("failures")
            response.cancel()
            raise PastDeadline(f"deployment {self.handle.deployment_name} did not answer a call of "
                               f"{len(requests)} requests in {self.timeout_s:g} s") from None
        except Exception:
            self._count("failures")
            raise
        finally:
            self._count("in_flight", -1)

    def sleep(self) -> dict:
        return {}

    def wake(self) -> dict:
        return {}

    def unload(self) -> dict:
        return {}

    def probe(self) -> dict:
        return {"text": "", "seconds": 0.0}

    def prefetch(self) -> None:
        """Nothing to read ahead: the deployment loaded its model when it started."""

    def info(self) -> EngineInfo:
        return EngineInfo(state=ACTIVE)

    def close(self) -> None:
        """The deployment keeps its model; Serve owns its replicas."""


class DeploymentExecutor(SlotExecutor):
    """The slot executor over the models' deployments: a slot per model; a failed call is retried up to
    ``max_retries`` times (``scheduler.max_retries``; 0: never) on a fresh handle, which waits until the
    deployment answers again; each call waits at most ``call_timeout_s`` (``serve.request_timeout_s``: by
    then every request the call answers has had its 504, so a timed-out call is never retried)."""

    def __init__(self, models: dict[str, DeploymentHandle], max_retries: int = 1,
                 call_timeout_s: float | None = None):
        policy = ExecutionPolicy(n_slots=len(models), deactivate="unload", probe_after_wake=False,
                                 max_retries=max_retries, chunk_requests=0)
        super().__init__(self._open, policy)
        self.handles = dict(models)
        self.call_timeout_s = call_timeout_s
        self.counts: dict[str, Counter] = {name: Counter() for name in models}
        self.count_lock = threading.Lock()
        try:
            self.app_name = serve.get_replica_context().app_name
        except Exception:  # outside a replica (a test driving the executor directly)
            self.app_name = None

    def _open(self, name: str, slot: int) -> DeploymentExpert:
        return DeploymentExpert(self.handles[name], self.counts[name], self.count_lock, self.call_timeout_s)

    def deployment_stats(self) -> dict[str, dict]:
        """Per model: its deployment, Serve's status and replica count, the router's calls (in flight, made,
        failed), and where one of its replicas runs (``answered_by``: node, pid, replica; None when none
        answered in time)."""
        asked = {name: handle.where.remote() for name, handle in self.handles.items()}
        states = deployment_states(self.app_name, [h.deployment_name for h in self.handles.values()])
        stats = {}
        for name, handle in self.handles.items():
            with self.count_lock:
                counts = {key: self.counts[name][key] for key in ("in_flight", "calls", "failures")}
            stats[name] = {"deployment": handle.deployment_name, **states.get(handle.deployment_name, {}),
                           **counts, "answered_by": answer_or_none(asked[name])}
        return stats


def answer_or_none(response, timeout_s: float = WHERE_WAIT_S):
    """A deployment call's result, or None when it fails or takes longer than ``timeout_s``."""
    try:
        return response.result(timeout_s=timeout_s)
    except Exception:
        response.cancel()
        return None


def deployment_states(app_name: str | None, names: list[str]) -> dict[str, dict]:
    """Serve's status of the named deployments: status and running replicas (and replicas by state)."""
    if app_name is None:
        return {}
    try:
        app = serve.status().applications.get(app_name)
    except Exception as exc:  # the controller is busy or restarting: report what the router knows
        log.warning("serve.status() failed: %s", exc)
        return {}
    found = {}
    for name in names:
        status = app.deployments.get(name) if app else None
        if status is not None:
            by_state = {str(getattr(s, "value", s)): n for s, n in status.replica_states.items()}
            found[name] = {"status": str(getattr(status.status, "value", status.status)),
                           "replicas": by_state.get("RUNNING", 0), "replica_states": by_state}
    return found


def served_models(cfg: RunConfig, preparation: ServingPreparation) -> list[str]:
    """The models the router may call: the keyword model, the aggregator, the experts."""
    names = [cfg.skills.keyword_model, preparation.aggregator, *(s.name for s in cfg.experts)]
    return list(dict.fromkeys(n for n in names if n))


def model_deployments(cfg: RunConfig, preparation: ServingPreparation, has_gpus: bool) -> dict:
    """Each served model's deployment, bound with its options (``serve.deployments``); ``has_gpus``: the
    cluster has GPUs (else a replica asks for none unless its options say so)."""
    engine = engine_for_run(cfg)
    bound = {}
    for name in served_models(cfg, preparation):
        gpus = cfg.scheduler.gpu_share if has_gpus else 0.0
        quiet = {k: os.environ.get(k, v) for k, v in QUIET_ENGINE_ENV.items()}
        options = serve_options(deployment_options(cfg.serve, name), gpus, quiet)
        bound[name] = ModelDeployment.options(name=DEPLOYMENT_PREFIX + name, **options).bind(
            cfg.pool[name], engine)
    return bound


def serve_options(options: DeploymentOptions, gpus: float = 0.0, quiet_env: dict | None = None) -> dict:
    """Serve's ``.options()`` of a deployment: replicas (or autoscaling), its limit, the actor options
    (no CPU, ``gpus`` GPUs and the quiet engine environment unless given)."""
    actor = {"num_cpus": 0, "num_gpus": gpus, **(options.ray_actor_options or {})}
    if quiet_env and "runtime_env" not in actor:
        actor["runtime_env"] = {"env_vars": quiet_env}
    out = {"ray_actor_options": actor, "max_ongoing_requests": options.max_ongoing_requests}
    if options.autoscaling_config is None:
        return {**out, "num_replicas": options.num_replicas}
    return {**out, "autoscaling_config": dict(options.autoscaling_config)}
