"""mode=plan: the schedule and predicted makespan for 1..N GPUs, without loading any model.

    python -m skillmoe_ray.run +experiment=gpqa mode=plan
    python -m skillmoe_ray.run +experiment=demo mode=plan plan.from_run=runs/demo/<run>

Local data is read to size the work; hub datasets are not downloaded (their configured ``size``
is used). Measured per-model figures from earlier runs take precedence over the cost model.
"""

from __future__ import annotations

import json
from pathlib import Path

from skillmoe_ray.config import RunConfig
from skillmoe_ray.engines import engine_class, model_fingerprint
from skillmoe_ray.errors import ConfigError
from skillmoe_ray.forecast.measurements import Measurements
from skillmoe_ray.forecast.simulator import Simulation, expert_figures, simulate
from skillmoe_ray.forecast.workload import estimate_stages, plan_sizes, stages_from_run
from skillmoe_ray.scheduling.grouping import replica_key
from skillmoe_ray.scheduling.residency import slot_memory_bytes


def engine_can_sleep(cfg: RunConfig) -> bool:
    """Whether the planned engine parks experts in host RAM (the engine class says, from its options)."""
    return engine_class(cfg.engine.name).sleeps_with(cfg.engine.options)


def fingerprints(cfg: RunConfig) -> dict[str, str]:
    """Model fingerprints, or the bare name for local models not built yet (nothing measured then)."""
    out = {}
    for name, spec in cfg.pool.items():
        try:
            out[name] = model_fingerprint(spec, cfg.engine)
        except FileNotFoundError:
            out[name] = name
    return out


UNIFORM_NOTE = (
    "assumes uniform recruitment: the inference stage's work per expert (k x test questions spread evenly "
    "over the pool), its activations, and every makespan and speed-up above, which include it; a real run "
    "recruits by the profiles (plan.from_run=<run dir> replays a finished run's actual split)")


def hms(seconds: float) -> str:
    """A duration as h:mm:ss ("1:02:03"), to read beside the seconds."""
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def make_plan(cfg: RunConfig, val=None, test=None) -> dict:
    """Workload, figures and a simulation for every GPU count of ``plan.gpus`` (and resources.gpus)."""
    assumption = None
    if cfg.plan.from_run:
        path = Path(cfg.plan.from_run) / "results.json"
        if not path.is_file():
            raise ConfigError(f"plan.from_run: no results.json in {cfg.plan.from_run}")
        stages = stages_from_run(json.loads(path.read_text()))
        source = f"replay of {cfg.plan.from_run}"
    else:
        n_val, n_test, question_tokens = plan_sizes(cfg, val, test)
        stages = estimate_stages(cfg, n_val, n_test, question_tokens)
        source = f"estimate: {n_test} test / {n_val} validation instances, k={cfg.recruit.k}"
        assumption = UNIFORM_NOTE
    measured = Measurements(cfg.cache_dir).data
    fps = fingerprints(cfg)
    figures = expert_figures(cfg, measured, fps, engine_can_sleep(cfg))
    counts = sorted({*cfg.plan.gpus, cfg.resources.gpus})
    sc, res = cfg.scheduler, cfg.resources
    budget = slot_memory_bytes(res.gpu_memory_gb, sc.residency, res.gpus)  # the executor's rule
    sims = {n: simulate(stages, figures, n, res.host_ram_bytes, budget, sc.deactivate,
                        sc.max_replicas, sc.replica_min_requests)
            for n in counts}
    return {
        "source": source,
        "measured_models": sorted(name for name, fp in fps.items() if fp in measured),
        "simulations": sims,
        "gpus": cfg.resources.gpus,
        "assumption": assumption,
    }


def format_plan(plan: dict) -> str:
    """The schedule at resources.gpus and the makespan table, one screen each."""
    sims: dict[int, Simulation] = plan["simulations"]
    chosen = sims[plan["gpus"]]
    rows = [f"{'stage':<22}{'expert':<32}{'slot':>4}  {'kind':<8}{'requests':>9}{'activation s':>14}"
            f"{'start s':>10}{'end s':>10}{'end h:mm:ss':>13}"]
    for e in chosen.entries:
        copy = replica_key(e["expert"], e.get("replica", 0))
        rows.append(f"{e['stage']:<22}{copy:<32}{e['slot']:>4}  {e['kind']:<8}{e['requests']:>9}"
                    f"{e['activation_seconds']:>14.1f}{e['start']:>10.1f}{e['end']:>10.1f}"
                    f"{hms(e['end']):>13}")
    base = sims[min(sims)].makespan
    table = [f"{'gpus':>4}{'makespan s':>12}{'h:mm:ss':>10}{'activations':>13}{'speed-up':>10}"]
    for n, sim in sims.items():
        speedup = base / sim.makespan if sim.makespan else 0
        table.append(f"{n:>4}{sim.makespan:>12.1f}{hms(sim.makespan):>10}{sim.activations:>13}"
                     f"{speedup:>10.2f}")
    measured = ", ".join(plan["measured_models"]) or "none (cost model only)"
    return "\n".join([
        f"plan ({plan['source']}); measured figures for: {measured}",
        "",
        f"schedule on {plan['gpus']} GPU(s):",
        *rows,
        "",
        "predicted makespan:",
        *table,
        *([] if not plan.get("assumption") else ["", f"note: {plan['assumption']}"]),
    ])
