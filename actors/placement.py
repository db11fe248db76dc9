"""PlacementScheduler: the library's SlotExecutor with experts as Ray actors on GPU slots.

Each expert gets an ExpertActor that asks Ray for a small share of a GPU (``scheduler.gpu_share``),
so several experts' actors can live on one GPU while the scheduler itself guarantees that only one
per slot is active. On a machine without GPUs, Ray's logical GPUs stand in for them.
"""

from __future__ import annotations

import logging
import os

import ray

from actors.expert import ExpertActor
from skillmoe_ray.config import RunConfig
from skillmoe_ray.engines.base import EngineInfo, GenOutput, GenRequest
from skillmoe_ray.errors import ConfigError
from skillmoe_ray.executor import SlotExecutor
from skillmoe_ray.progress import ProgressFactory, no_progress
from skillmoe_ray.residency import footprints_from_config

log = logging.getLogger(__name__)

# Engine log noise stays out of the run's output unless the user asks for it.
QUIET_ENGINE_ENV = {"VLLM_LOGGING_LEVEL": "WARNING", "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}


class RayExpert:
    """An ExpertHandle that forwards each call to an ExpertActor and waits for it."""

    def __init__(self, actor):
        self.actor = actor

    def load(self) -> dict:
        return ray.get(self.actor.load.remote())

    def sleep(self) -> dict:
        return ray.get(self.actor.sleep.remote())

    def wake(self) -> dict:
        return ray.get(self.actor.wake.remote())

    def unload(self) -> dict:
        return ray.get(self.actor.unload.remote())

    def generate(self, requests: list[GenRequest]) -> list[GenOutput]:
        return ray.get(self.actor.generate.remote(requests))

    def probe(self) -> dict:
        return ray.get(self.actor.probe.remote())

    def prefetch(self) -> None:
        self.actor.prefetch.remote()  # fire and forget: the read-ahead overlaps another expert's work

    def info(self) -> EngineInfo:
        return ray.get(self.actor.info.remote())

    def close(self) -> None:
        try:
            ray.get(self.actor.unload.remote(), timeout=60)
        finally:
            ray.kill(self.actor)


class PlacementScheduler(SlotExecutor):
    """Serializes expert activation per GPU slot; experts are Ray actors created on first need."""

    def __init__(self, cfg: RunConfig, progress: ProgressFactory = no_progress, t0: float | None = None):
        super().__init__(
            self._open_expert,
            n_slots=cfg.resources.gpus,
            deactivate=cfg.scheduler.deactivate,
            host_ram_bytes=cfg.resources.host_ram_bytes,
            progress=progress,
            t0=t0,
            probe=cfg.scheduler.probe_after_wake,
            gpu_memory_bytes=cfg.resources.gpu_memory_bytes,
            footprint=footprints_from_config(cfg),
            max_replicas=cfg.scheduler.max_replicas,
            replica_min_requests=cfg.scheduler.replica_min_requests,
            max_retries=cfg.scheduler.max_retries,
            chunk_requests=cfg.scheduler.chunk_requests,
        )
        self.cfg = cfg
        self.gpu_share = cfg.scheduler.gpu_share
        self.placement = None
        check_gpu_slots(cfg.resources.gpus)
        if ray.cluster_resources().get("GPU", 0) <= 0:
            # e.g. `serve run` started Ray itself on a machine without GPUs: no logical GPUs exist
            log.warning("the Ray cluster has no GPU resource: expert actors are placed without one")
            self.gpu_share = 0.0
        elif cfg.resources.gpus > 1:
            self.placement = gpu_slots(cfg.resources.gpus)

    def _open_expert(self, name: str, slot: int) -> RayExpert:
        spec = self.cfg.pool[name]
        env = {k: os.environ.get(k, v) for k, v in QUIET_ENGINE_ENV.items()}
        options = dict(num_cpus=0, num_gpus=self.gpu_share, max_restarts=0, runtime_env={"env_vars": env})
        if self.placement is not None:  # pin the actor to its slot's GPU bundle
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                placement_group=self.placement, placement_group_bundle_index=slot)
        log_path = os.path.join(self.cfg.run_dir, "logs", f"expert-{name}.log")
        actor = ray.remote(ExpertActor).options(**options).remote(spec, self.cfg.engine, log_path)
        log.info("started actor for expert %s on slot %d (%s); engine log: logs/expert-%s.log", name, slot, spec.path, name)
        return RayExpert(actor)

    def close(self) -> None:
        super().close()
        if self.placement is not None:
            ray.util.remove_placement_group(self.placement)
            self.placement = None


def gpu_shortage(requested: int, node_gpus: dict[str, float]) -> str | None:
    """Why ``requested`` GPU slots cannot be placed on nodes with these GPU counts, or None when they can.

    A cluster without any GPU is no shortage: expert actors are then placed without one (CPU engines).
    """
    total = sum(node_gpus.values())
    if requested <= 1 or total <= 0 or total >= requested:
        return None
    nodes = ", ".join(f"{node}: {gpus:g}" for node, gpus in sorted(node_gpus.items()))
    return (f"resources.gpus={requested} asks for {requested} GPU slots, but the Ray cluster has {total:g} GPU(s) "
            f"on {len(node_gpus)} node(s) ({nodes}); set resources.gpus={int(total)} or fewer, or use a larger cluster")


def check_gpu_slots(requested: int) -> None:
    """Refuse (ConfigError) a slot count above the connected cluster's GPUs, naming what it has."""
    if not ray.is_initialized():
        return
    node_gpus = {node.get("NodeManagerAddress", node["NodeID"][:8]): node.get("Resources", {}).get("GPU", 0.0)
                 for node in ray.nodes() if node.get("Alive")}
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
        raise ConfigError(f"resources.gpus={n}: {n} whole GPUs were not free within {wait_s:g} s (the cluster has "
                          f"{ray.cluster_resources().get('GPU', 0.0):g}, {free:g} free now: other work holds the "
                          "rest); retry when they are free or set resources.gpus lower") from None
    return group
