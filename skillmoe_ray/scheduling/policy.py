"""How the executor runs: one frozen value, built from the config's ``scheduler`` and ``resources`` sections.

:class:`ExecutionPolicy` is everything :class:`~skillmoe_ray.scheduling.executor.SlotExecutor` and its slot
state need to decide (how many slots, sleep or unload, memory limits, probes, replicas, retries, chunks);
:func:`execution_policy` is the one place a run's config becomes one. Tests and benchmarks build a policy
directly: its defaults are the simplest executor (one slot, one resident expert, no retries, whole groups).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from skillmoe_ray.config import RunConfig
from skillmoe_ray.scheduling.residency import footprints_from_config, machine_memory, slot_memory_bytes


def weights_only(expert: str, weight_bytes: int) -> float:
    """The default footprint: an expert holds its measured weight bytes while resident."""
    return float(weight_bytes)


@dataclass(frozen=True)
class ExecutionPolicy:
    """The executor's settings.

    ``deactivate``: auto | sleep | unload (:func:`~skillmoe_ray.scheduling.residency.sleeps_on_deactivation`);
    ``host_ram_bytes``: what sleeping experts may hold in host RAM; ``probe_after_wake``: a greedy probe
    after each wake, compared with the one at first load; ``gpu_memory_bytes``: one slot's memory budget
    (a run's: :func:`~skillmoe_ray.scheduling.residency.slot_memory_bytes`), or None for one resident
    model per slot; ``footprint``: (expert, measured weight bytes or 0) -> device
    bytes it holds while resident; ``max_replicas`` and ``replica_min_requests``: when a large group is
    split over copies of its expert; ``max_retries``: a failed group runs again on a fresh expert this many
    times; ``chunk_requests``: a group generates (and is stored) this many requests at a time, 0 for all;
    ``load_ahead``: a slot's next cold expert loads while the current one generates, where the budget has room
    (:mod:`~skillmoe_ray.scheduling.load_ahead`); ``load_ahead_loads``: it may also start an engine from disk
    (False: it only wakes sleeping experts).
    """

    n_slots: int = 1
    deactivate: str = "auto"
    host_ram_bytes: float = float("inf")
    probe_after_wake: bool = True
    gpu_memory_bytes: float | None = None
    footprint: Callable[[str, int], float] = weights_only
    max_replicas: int = 1
    replica_min_requests: int = 8
    max_retries: int = 0
    chunk_requests: int = 0
    load_ahead: bool = False
    load_ahead_loads: bool = True


def execution_policy(cfg: RunConfig) -> ExecutionPolicy:
    """The policy a run's config asks for: its scheduler and resources sections, the pool's footprints."""
    scheduler, resources = cfg.scheduler, cfg.resources
    return ExecutionPolicy(
        n_slots=resources.gpus,
        deactivate=scheduler.deactivate,
        host_ram_bytes=resources.host_ram_bytes,
        probe_after_wake=scheduler.probe_after_wake,
        gpu_memory_bytes=slot_memory_bytes(resources.gpu_memory_gb, scheduler.residency, resources.gpus),
        footprint=footprints_from_config(cfg),
        max_replicas=scheduler.max_replicas,
        replica_min_requests=scheduler.replica_min_requests,
        max_retries=scheduler.max_retries,
        chunk_requests=scheduler.chunk_requests,
        load_ahead=scheduler.load_ahead,
        load_ahead_loads=not profiles_device_memory_at_start(cfg),
    )


def profiles_device_memory_at_start(cfg: RunConfig) -> bool:
    """Whether a starting engine sizes itself from the GPU's free memory (vLLM on CUDA profiles it while
    it starts): another engine's generation on the same GPU meanwhile could skew that, so a load-ahead
    there only wakes sleeping experts and leaves fresh starts to their turn."""
    machine = machine_memory()
    return cfg.engine.name == "vllm" and machine is not None and machine[0] == "cuda"
