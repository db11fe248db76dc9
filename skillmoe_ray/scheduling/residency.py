"""Memory-aware co-residency: which experts stay on a GPU slot when another one is activated.

DESIGN section 4: "activate one expert (or as many as fit in memory together)". Each slot has a memory
budget (:func:`slot_memory_bytes`: ``resources.gpu_memory_gb`` when given, else the machine's: the smallest
GPU's memory, or without a GPU :data:`HOST_RAM_SHARE` of the host RAM shared by the slots), and models whose
footprints fit it together stay resident side by side, so a model needed again (in a later stage, or by the
next request batch) costs no switch at all, batch and serve alike. ``scheduler.residency=single`` keeps one
resident model per slot (the behaviour before the budget).

The eviction rule is a pure function shared by the executor (real runs) and the simulator
(mode=plan), so that the plan predicts the decisions the executor makes.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from skillmoe_ray.config import CostConfig, EngineConfig, ModelSpec, RunConfig
from skillmoe_ray.engines import engine_class, engine_entry
from skillmoe_ray.engines.gpu_memory import capped_max_num_seqs, engine_need, kv_cache_bytes, model_config_of

GB = 1e9
# Without a GPU, resident models share this fraction of the host's physical RAM (the rest stays for the OS,
# Ray, the sleepers' budget and the other processes of the machine)
HOST_RAM_SHARE = 0.5
# Rank of a model every request needs (online: the keyword model and the aggregator): evicted last, and never
# to make room for a load-ahead
ALWAYS_NEEDED = float("inf")

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def machine_memory() -> tuple[str, float] | None:
    """("cuda", the smallest GPU's bytes) where ``nvidia-smi`` reports GPUs, else ("cpu", physical RAM bytes);
    None when neither is known. Read without importing torch (the driver may hold no GPU itself)."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout
            mib = [float(line) for line in out.split() if line.strip()]
            if mib:
                return "cuda", min(mib) * 2**20
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            log.warning("nvidia-smi did not report GPU memory (%s): budgeting from host RAM", exc)
    try:
        return "cpu", float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (OSError, ValueError, AttributeError):
        return None


def slot_memory_bytes(gpu_memory_gb: float | None, residency: str, n_slots: int) -> float | None:
    """One slot's memory budget in bytes, the one rule of the executor and mode=plan.

    None: one model per slot.

    ``gpu_memory_gb`` (``resources.gpu_memory_gb``) overrides the machine's figure; ``residency`` ``single``
    asks for one resident model per slot whatever the memory.
    """
    if residency == "single":
        return None
    if gpu_memory_gb is not None:
        return gpu_memory_gb * GB
    machine = machine_memory()
    if machine is None:
        return None
    device, total = machine
    return total if device == "cuda" else total * HOST_RAM_SHARE / max(n_slots, 1)


def on_cpu(gpu_memory_gb: float | None) -> bool:
    """Models run in host RAM: no GPU reported and no GPU memory given."""
    machine = machine_memory()
    return gpu_memory_gb is None and (machine is None or machine[0] == "cpu")


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
    rank: Mapping[str, float] | None = None,
) -> list[str]:
    """The residents of a slot to deactivate so that ``incoming`` fits beside the others.

    ``residents`` is ordered least recently used first. ``capacity`` is the slot's device memory
    in bytes; None means one expert at a time (every resident goes). The rule: experts in ``keep``
    (needed later in this stage or by the next one: the batch plan) are evicted last; then those of
    higher ``rank`` (online: the keyword model and the aggregator, which every request needs, rank
    highest, experts by how often they were recruited recently); among equals, the least recently used
    goes first. An incoming expert larger than the whole slot evicts everyone and runs alone.
    """
    residents = [e for e in residents if e != incoming]
    if capacity is None:
        return residents
    keep, rank = set(keep), rank or {}
    used = sum(footprints[e] for e in residents)
    order = sorted(
        range(len(residents)), key=lambda i: (residents[i] in keep, rank.get(residents[i], 0.0), i)
    )
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
    in_host_ram: bool | None = None,
) -> float:
    """Device bytes an expert holds while resident on a GPU slot: the one rule of the executor and mode=plan.

    In host RAM (``in_host_ram``: the engine runs on the CPU; None reads it as mode=plan does: no GPU
    reported and no ``gpu_memory_gb`` given, which otherwise models a GPU of that size) a model holds its
    weights times ``headroom`` and the KV cache its engine reserves in RAM (``cpu_kvcache_gb``). The weight
    bytes are the measured ones (``weight_bytes``: after a load, or the weight files' size on disk) or else
    estimated from the pool's ``params_b``. A vLLM engine holds its weights, its KV cache
    (``kv_cache_memory_bytes`` or the default rule of :mod:`skillmoe_ray.engines.gpu_memory`), workspace
    and residue; where its KV cache cannot be sized (a hub model not on disk), the share of the GPU it may
    take (``gpu_memory_utilization``). Other engines hold ``headroom`` times the weights.
    """
    if weight_bytes <= 0:
        weight_bytes = (spec.params_b or cost.default_params_b) * 1e9 * cost.bytes_per_param
    if in_host_ram is None:
        in_host_ram = on_cpu(gpu_memory_gb)
    if in_host_ram:
        return weight_bytes * headroom + float(engine.options.get("cpu_kvcache_gb", 0)) * 2**30
    share = engine.options.get("gpu_memory_utilization")
    if engine_entry(engine.name).reserves_gpu_share and gpu_memory_gb:
        kv = kv_cache_bytes(
            model_config_of(spec.path, spec.revision),
            spec.dtype or engine.dtype,
            engine.options.get("max_num_seqs", 256),
            spec.max_model_len,
            spec.max_tokens,
            engine.kwargs_for(spec),
        )
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


def footprints_from_config(cfg: RunConfig, planning: bool = False) -> Callable[[str, int], float]:
    """(expert, measured weight bytes or 0) -> its resident footprint, for the executor (or, ``planning``,
    for mode=plan).

    Before an expert's first load, a local model's weight files on disk stand in for the measure. A run on
    a machine without a GPU counts host RAM even where ``resources.gpu_memory_gb`` overrides the budget
    (a vLLM CPU engine reserves ``cpu_kvcache_gb``, not a share of a GPU); a plan made there with
    ``gpu_memory_gb`` set models a GPU of that size.
    """
    on_disk = {name: weight_bytes_on_disk(spec) for name, spec in cfg.pool.items()}
    engine = engine_for_run(cfg)
    machine_has_no_gpu = on_cpu(None)
    in_host_ram = None if planning else machine_has_no_gpu
    gpu_memory_gb = cfg.resources.gpu_memory_gb
    if gpu_memory_gb is None and not machine_has_no_gpu:  # a GPU machine's own memory sizes vLLM's share
        gpu_memory_gb = (slot_memory_bytes(None, "budget", cfg.resources.gpus) or 0) / GB or None

    def of(expert: str, weight_bytes: int) -> float:
        return footprint(
            cfg.pool[expert],
            engine,
            gpu_memory_gb,
            cfg.scheduler.cost,
            cfg.scheduler.memory_headroom,
            weight_bytes or on_disk[expert],
            in_host_ram,
        )

    return of
