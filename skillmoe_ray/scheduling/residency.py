"""Memory-aware co-residency: which experts stay on a GPU slot when another one is activated.

DESIGN section 4: "activate one expert (or as many as fit in memory together)". With a known GPU
memory per slot (``resources.gpu_memory_gb``), experts whose device footprints fit together stay
resident side by side, so an expert needed again (in a later stage, or by the next request batch)
costs no switch at all. Without it, a slot holds one resident expert, as before.

The eviction rule is a pure function shared by the executor (real runs) and the simulator
(mode=plan), so that the plan predicts the decisions the executor makes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from skillmoe_ray.config import CostConfig, EngineConfig, ModelSpec, RunConfig
from skillmoe_ray.engines import engine_class, engine_entry
from skillmoe_ray.engines.gpu_memory import capped_max_num_seqs, engine_need, kv_cache_bytes, model_config_of

GB = 1e9


def touch(residents: list[str], expert: str) -> bool:
    """Mark ``expert`` most recently used if it is resident (``residents`` is LRU-ordered); False if not."""
    if expert not in residents:
        return False
    residents.remove(expert)
    residents.append(expert)
    return True


def evictions(
    residents: Sequence[str],
    footprints: Mapping[str, float],
    incoming: str,
    capacity: float | None,
    keep: Iterable[str] = (),
) -> list[str]:
    """The residents of a slot to deactivate so that ``incoming`` fits beside the others.

    ``residents`` is ordered least recently used first. ``capacity`` is the slot's device memory
    in bytes; None means one expert at a time (every resident goes). Experts in ``keep`` (needed
    later in this stage or by the next one) are evicted last; among equals, the least recently
    used goes first. An incoming expert larger than the whole slot evicts everyone and runs alone.
    """
    residents = [e for e in residents if e != incoming]
    if capacity is None:
        return residents
    keep = set(keep)
    used = sum(footprints[e] for e in residents)
    order = sorted(range(len(residents)), key=lambda i: (residents[i] in keep, i))
    out = []
    for i in order:
        if used + footprints[incoming] <= capacity:
            break
        out.append(residents[i])
        used -= footprints[residents[i]]
    return out


def sleeps_on_deactivation(policy: str, can_sleep: bool, fits_host_ram: bool, needed_again: bool) -> bool:
    """Whether a deactivated expert sleeps (weights to host RAM) rather than unloads.

    ``auto`` sleeps only an expert that may be needed again: sleeping one that is not costs a
    device-to-host copy and host RAM that experts still to come could use. ``sleep`` sleeps
    whenever it can; ``unload`` never sleeps.
    """
    if policy == "unload" or not (can_sleep and fits_host_ram):
        return False
    return policy == "sleep" or needed_again


def needed_again(copy: str, expert: str, keep: Iterable[str], later: Iterable[str] | None) -> bool:
    """``copy`` of ``expert`` on a slot is needed again: later in this stage (``keep``), or by a later stage.

    A replica (``copy`` is expert#i, not the expert itself) never is: its expert's own copy serves
    later work. ``later`` is None when the later stages' experts are not known yet (stages before
    recruitment, online serving): then every expert may be needed again.
    """
    if copy != expert:
        return False
    return later is None or copy in set(keep) or copy in set(later)


def footprint(
    spec: ModelSpec,
    engine: EngineConfig,
    gpu_memory_gb: float | None,
    cost: CostConfig,
    headroom: float,
    weight_bytes: float = 0,
) -> float:
    """Device bytes an expert holds while resident on a GPU slot: the one rule of the executor and mode=plan.

    The weight bytes are the measured ones (``weight_bytes``: after a load, or the weight files' size on
    disk) or else estimated from the pool's ``params_b``. A vLLM engine holds its weights, its KV cache
    (``kv_cache_memory_bytes`` or the default rule of :mod:`skillmoe_ray.engines.gpu_memory`), workspace
    and residue; where its KV cache cannot be sized (a hub model not on disk), the share of the GPU it may
    take (``gpu_memory_utilization``). Other engines hold ``headroom`` times the weights.
    """
    if weight_bytes <= 0:
        weight_bytes = (spec.params_b or cost.default_params_b) * 1e9 * cost.bytes_per_param
    share = engine.options.get("gpu_memory_utilization")
    if engine_entry(engine.name).reserves_gpu_share and gpu_memory_gb:
        kv = kv_cache_bytes(model_config_of(spec.path, spec.revision), spec.dtype or engine.dtype,
                            engine.options.get("max_num_seqs", 256), spec.max_model_len, spec.max_tokens,
                            engine.kwargs_for(spec))
        if kv is not None:
            return engine_need(weight_bytes, kv)
        if share:
            return float(share) * gpu_memory_gb * GB
    return weight_bytes * headroom


def engine_for_run(cfg: RunConfig) -> EngineConfig:
    """The engine settings experts get: a vLLM engine decodes no more sequences at once than the largest
    batch it is given (``scheduler.chunk_requests``), so it captures no graphs for sizes never used."""
    options = dict(cfg.engine.options)
    defaults = engine_class(cfg.engine.name).OPTIONS
    if "max_num_seqs" in defaults:  # an engine that batches sequences (vLLM)
        configured = options.get("max_num_seqs", defaults["max_num_seqs"])
        options["max_num_seqs"] = capped_max_num_seqs(configured, cfg.scheduler.chunk_requests)
    return dataclasses.replace(cfg.engine, options=options)


def weight_bytes_on_disk(spec: ModelSpec) -> int:
    """Size of a local model's safetensors files (0 for a hub id or a model not on disk)."""
    root = Path(spec.path).expanduser()
    return sum(p.stat().st_size for p in root.glob("*.safetensors")) if root.is_dir() else 0


def footprints_from_config(cfg: RunConfig) -> Callable[[str, int], float]:
    """(expert, measured weight bytes or 0) -> its resident footprint, for the executor.

    Before an expert's first load, a local model's weight files on disk stand in for the measure.
    """
    on_disk = {name: weight_bytes_on_disk(spec) for name, spec in cfg.pool.items()}
    engine = engine_for_run(cfg)

    def of(expert: str, weight_bytes: int) -> float:
        return footprint(cfg.pool[expert], engine, cfg.resources.gpu_memory_gb, cfg.scheduler.cost,
                         cfg.scheduler.memory_headroom, weight_bytes or on_disk[expert])

    return of
