"""PlacementScheduler: the library's SlotExecutor with experts as Ray actors on GPU slots.

Each expert gets an ExpertActor that asks Ray for a small share of a GPU (``scheduler.gpu_share``),
so several experts' actors can live on one GPU while the scheduler itself guarantees that only one
per slot is active. On a machine without GPUs, Ray's logical GPUs stand in for them.

With several slots, slot i is bundle i of a placement group of one-GPU bundles, which Ray may spread
over several nodes. When a node dies, its actors die with it (the executor retries their groups on
fresh actors) and Ray reschedules the lost bundles; a fresh actor whose bundle has no node after a
short wait is placed in a surviving bundle instead (its slot then shares that GPU), so the run goes
on with the nodes that are left. ``placements`` in the summary says which node each actor ran on.

Experts whose engine serves one instance per process (vLLM on CUDA) are placed more strictly: their actor
ends when they unload (a reload is a fresh process), even one GPU slot is reserved by a placement group,
and a slot whose bundle was lost waits for Ray to place it again (or the run stops with one line) instead
of sharing another slot's GPU, since each engine sizes its memory from the device it finds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import ray

from skillmoe_ray.config import EngineConfig, RunConfig
from skillmoe_ray.engines import engine_class
from skillmoe_ray.engines.base import EngineInfo, GenOutput, GenRequest
from skillmoe_ray.errors import ConfigError, ExpertFailed
from skillmoe_ray.progress import ProgressFactory, no_progress
from skillmoe_ray.scheduling.executor import SlotExecutor
from skillmoe_ray.scheduling.policy import execution_policy
from skillmoe_ray.scheduling.residency import engine_for_run
from skillmoe_ray.scheduling.timeline import ExecutorSummary
from skillmoe_ray_actors.expert import ExpertActor

log = logging.getLogger(__name__)

# Engine log noise stays out of the run's output unless the user asks for it.
QUIET_ENGINE_ENV = {"VLLM_LOGGING_LEVEL": "WARNING", "TRANSFORMERS_VERBOSITY": "error",
                    "TOKENIZERS_PARALLELISM": "false"}
# Seconds a slot whose bundle was lost with its node waits for Ray to reschedule it before sharing another's
RESCHEDULE_WAIT_S = 5.0
# Seconds a slot of one-engine-per-process experts (vLLM on CUDA) waits for its lost bundle: such experts
# cannot share another slot's GPU (each sizes its memory from the whole device), so the run then stops
EXCLUSIVE_RESCHEDULE_WAIT_S = 120.0
# Seconds an unload of a one-engine-per-process expert waits for its killed actor to be gone: the next
# engine sizes its memory from what is free on the device, which the old process holds until it ends
ACTOR_EXIT_WAIT_S = 60.0


class RayExpert:
    """An ExpertHandle that forwards each call to an ExpertActor and waits for it.

    ``start`` makes the actor. With ``fresh_per_load`` (an engine that serves one instance per process:
    vLLM on CUDA, whose CuMem allocator asserts so) the actor ends when its expert unloads, freeing its
    CUDA context, and the next load (or read-ahead) starts a new one in a fresh process.
    """

    def __init__(self, start: Callable[[], Any], fresh_per_load: bool = False):
        self.start = start
        self.fresh_per_load = fresh_per_load
        self.actor = start()

    def _live(self):
        if self.actor is None:
            self.actor = self.start()
        return self.actor

    def load(self) -> dict:
        return ray.get(self._live().load.remote())

    def sleep(self) -> dict:
        return ray.get(self.actor.sleep.remote())

    def wake(self) -> dict:
        return ray.get(self.actor.wake.remote())

    def unload(self) -> dict:
        if self.actor is None:
            return {"unload": 0.0}
        timings = ray.get(self.actor.unload.remote())
        if self.fresh_per_load:
            end_actor(self.actor)
            self.actor = None
        return timings

    def generate(self, requests: list[GenRequest]) -> list[GenOutput]:
        return ray.get(self.actor.generate.remote(requests))

    def probe(self) -> dict:
        return ray.get(self.actor.probe.remote())

    def prefetch(self) -> None:
        self._live().prefetch.remote()  # fire and forget: the read-ahead overlaps another expert's work

    def info(self) -> EngineInfo:
        return EngineInfo() if self.actor is None else ray.get(self.actor.info.remote())

    def pid(self) -> int:
        """The process the expert's engine lives in (a fresh one after each unload, ``fresh_per_load``)."""
        return ray.get(self._live().pid.remote())

    def close(self) -> None:
        if self.actor is None:
            return
        try:
            ray.get(self.actor.unload.remote(), timeout=60)
        finally:
            ray.kill(self.actor)
            self.actor = None


def end_actor(actor, wait_s: float = ACTOR_EXIT_WAIT_S) -> None:
    """Kill an actor and return once Ray reports it dead (``ray.kill`` only sends the request: a call made
    right after may still reach the live process). Logs a warning if it is not gone within ``wait_s``."""
    ray.kill(actor)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            ray.get(actor.__ray_ready__.remote(), timeout=max(0.1, deadline - time.monotonic()))
        except ray.exceptions.RayActorError:  # dead (or its process unreachable): gone
            return
        except ray.exceptions.GetTimeoutError:
            break
        time.sleep(0.05)
    log.warning("a killed expert actor was not reported dead within %.0f s; loading its next one anyway",
                wait_s)


def one_engine_per_process(engine: EngineConfig) -> bool:
    """Whether the engine's expert processes end at unload (the engine class says, from its options)."""
    rule = getattr(engine_class(engine.name), "one_per_process", None)
    return bool(rule and rule(engine.options))


class PlacementScheduler(SlotExecutor):
    """Serializes expert activation per GPU slot; experts are Ray actors created on first need."""

    def __init__(self, cfg: RunConfig, progress: ProgressFactory = no_progress, t0: float | None = None):
        super().__init__(self._open_expert, execution_policy(cfg), progress, t0)
        self.cfg = cfg
        self.engine = engine_for_run(cfg)
        self.exclusive = one_engine_per_process(cfg.engine)
        self.gpu_share = cfg.scheduler.gpu_share
        self.placement = None
        self.placements: list[tuple] = []  # (expert, slot, bundle, the bundle's node, the actor's node ref)
        self.lost_bundles: set[int] = set()  # bundles already waited for once
        check_gpu_slots(cfg.resources.gpus)
        if ray.cluster_resources().get("GPU", 0) <= 0:
            # e.g. `serve run` started Ray itself on a machine without GPUs: no logical GPUs exist
            log.warning("the Ray cluster has no GPU resource: expert actors are placed without one")
            self.gpu_share = 0.0
        elif cfg.resources.gpus > 1 or self.exclusive:  # one-engine-per-process experts reserve even one GPU
            self.placement = gpu_slots(cfg.resources.gpus)

    def _open_expert(self, name: str, slot: int) -> RayExpert:
        return RayExpert(lambda: self._start_actor(name, slot), self.exclusive)

    def _start_actor(self, name: str, slot: int):
        """A new ExpertActor for ``name`` in ``slot``'s GPU bundle (or a surviving one), recorded."""
        spec = self.cfg.pool[name]
        env = {k: os.environ.get(k, v) for k, v in QUIET_ENGINE_ENV.items()}
        options = dict(num_cpus=0, num_gpus=self.gpu_share, max_restarts=0, runtime_env={"env_vars": env})
        bundle, node = None, None
        if self.placement is not None:  # pin the actor to its slot's GPU bundle (or a surviving one)
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            bundle, node = self._live_bundle(slot)
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                placement_group=self.placement, placement_group_bundle_index=bundle)
        log_path = os.path.join(self.cfg.run_dir, "logs", f"expert-{name}.log")
        actor = ray.remote(ExpertActor).options(**options).remote(spec, self.engine, log_path)
        log.info("started actor for expert %s on slot %d (%s); engine log: logs/expert-%s.log", name, slot,
                 spec.path, name)
        self.placements.append((name, slot, bundle, node, actor.node_id.remote()))
        return actor

    def _live_bundle(self, slot: int) -> tuple[int, str]:
        """(bundle, its node): the slot's bundle when a node holds it; else, after one short wait for Ray
        to reschedule it, a surviving bundle (an actor in a bundle without a node would wait for ever)."""
        nodes = bundle_nodes(self.placement)
        if nodes.get(slot):
            self.lost_bundles.discard(slot)
            return slot, nodes[slot]
        if slot not in self.lost_bundles:
            self.lost_bundles.add(slot)
            deadline = time.monotonic() + RESCHEDULE_WAIT_S
            while not nodes.get(slot) and time.monotonic() < deadline:
                time.sleep(0.2)
                nodes = bundle_nodes(self.placement)
            if nodes.get(slot):
                return slot, nodes[slot]
        if self.exclusive:
            return slot, self._wait_for_bundle(slot)
        live = [b for b, node in sorted(nodes.items()) if node]
        if not live:
            raise RuntimeError("every GPU bundle of the run was lost with its node; "
                               "no node left to place experts on")
        chosen = live[slot % len(live)]
        log.warning(
            "slot %d's GPU was lost with its node: its expert actors go to slot %d's GPU (node %s) "
            "until Ray places the bundle again",
            slot,
            chosen,
            nodes[chosen][:12],
        )
        return chosen, nodes[chosen]

    def _wait_for_bundle(self, slot: int) -> str:
        """The node of ``slot``'s lost bundle once Ray places it again; else the run stops with one line."""
        deadline = time.monotonic() + EXCLUSIVE_RESCHEDULE_WAIT_S
        while time.monotonic() < deadline:
            node = bundle_nodes(self.placement).get(slot)
            if node:
                return node
            time.sleep(1.0)
        raise ExpertFailed(
            f"slot {slot}'s GPU was lost with its node and not placed again within "
            f"{EXCLUSIVE_RESCHEDULE_WAIT_S:g} s; vLLM experts cannot share another slot's "
            f"GPU: rerun (finished work is kept) with resources.gpus set to the GPUs left"
        )

    def summary(self) -> ExecutorSummary:
        """The executor's summary plus ``placements``: each expert actor's slot, bundle and node."""
        return replace(super().summary(), placements=tuple(self._placement_rows()))

    def _placement_rows(self) -> list[dict]:
        refs = [ref for *_, ref in self.placements]
        if refs:  # a dead actor's answer is an error at once; a live one answers in milliseconds
            ray.wait(refs, num_returns=len(refs), timeout=10)
        rows = []
        for name, slot, bundle, node, ref in self.placements:
            # an actor that died (with its node) before it answered keeps its bundle's node
            with contextlib.suppress(Exception):
                node = ray.get(ref, timeout=0)
            rows.append({"expert": name, "slot": slot, "bundle": bundle, "node": node})
        return rows

    def close(self) -> None:
        super().close()
        if self.placement is not None:
            ray.util.remove_placement_group(self.placement)
            self.placement = None


def bundle_nodes(group) -> dict[int, str]:
    """Bundle index -> id of the node holding it ('' while a lost bundle waits to be placed again)."""
    from ray.util.placement_group import placement_group_table

    return {int(b): node or "" for b, node in placement_group_table(group)["bundles_to_node_id"].items()}


def gpu_shortage(requested: int, node_gpus: dict[str, float]) -> str | None:
    """Why ``requested`` GPU slots cannot be placed on nodes with these GPU counts, or None when they can.

    A cluster without any GPU is no shortage: expert actors are then placed without one (CPU engines).
    """
    total = sum(node_gpus.values())
    if requested <= 1 or total <= 0 or total >= requested:
        return None
    nodes = ", ".join(f"{node}: {gpus:g}" for node, gpus in sorted(node_gpus.items()))
    return (
        f"resources.gpus={requested} asks for {requested} GPU slots, "
        f"but the Ray cluster has {total:g} GPU(s) on {len(node_gpus)} node(s) ({nodes}); "
        f"set resources.gpus={int(total)} or fewer, or use a larger cluster"
    )


def check_gpu_slots(requested: int) -> None:
    """Refuse (ConfigError) a slot count above the connected cluster's GPUs, naming what it has."""
    if not ray.is_initialized():
        return
    # keyed by node id: several nodes may share one address (ray.cluster_utils, or containers on one host)
    node_gpus = {
        f"{node.get('NodeManagerAddress', '?')}/{node['NodeID'][:8]}": node.get("Resources", {}).get(
            "GPU", 0.0
        )
        for node in ray.nodes()
        if node.get("Alive")
    }
    problem = gpu_shortage(requested, node_gpus)
    if problem:
        raise ConfigError(problem)


def gpu_slots(n: int, wait_s: float = 120.0):
    """A placement group of ``n`` one-GPU bundles: slot i is bundle i, one GPU each.

    The cluster has the GPUs (:func:`check_gpu_slots`); when other work holds them past ``wait_s``
    the run stops with one error saying how many are free.
    """
    from ray.util.placement_group import placement_group

    group = placement_group([{"GPU": 1}] * n, strategy="PACK")
    try:
        ray.get(group.ready(), timeout=wait_s)
    except ray.exceptions.GetTimeoutError:
        ray.util.remove_placement_group(group)
        free = ray.available_resources().get("GPU", 0.0)
        raise ConfigError(
            f"resources.gpus={n}: {n} whole GPUs were not free within {wait_s:g} s (the cluster has "
            f"{ray.cluster_resources().get('GPU', 0.0):g}, {free:g} free now: other work holds the "
            "rest); retry when they are free or set resources.gpus lower"
        ) from None
    return group
