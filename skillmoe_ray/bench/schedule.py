"""Benchmark: grouped expert activation vs per-instance loading vs a lower bound, run for real.

    python -m skillmoe_ray.bench.schedule                       # tiny models, transformers, CPU
    python -m skillmoe_ray.bench.schedule --experts 8 --instances 40 --gpus 2

The same workload (each instance routed to k experts, seeded) runs twice through the real
executor and engines: grouped (the batch plan: one activation per expert, its whole group in one
call) and naive (instances in order, each request activating its expert, as routing without
grouping would). The lower bound is the grouped run's pure generation time plus one measured
activation per expert, divided over the GPUs. Deactivation is an unload by default: on a CPU a
"sleep" frees nothing, so only a reload shows what switching really costs.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from skillmoe_ray.aggregate import expert_messages
from skillmoe_ray.config import DemoConfig, ModelSpec
from skillmoe_ray.data import demo_data_path
from skillmoe_ray.data.local import load_local
from skillmoe_ray.demo import ensure_demo_models
from skillmoe_ray.engines import create_engine
from skillmoe_ray.engines.base import GenRequest, Sampling
from skillmoe_ray.executor import LocalExpert, SlotExecutor
from skillmoe_ray.plan import ExpertGroup, group_by_expert
from skillmoe_ray.seeding import derive_seed


def build_pool(root: Path, n: int, hidden: int, layers: int) -> dict[str, ModelSpec]:
    """``n`` random-weight experts of the demo's architectures (built once, then reused)."""
    archs = ("llama", "qwen3", "mistral")
    recipes = {f"bench-{i}": {"arch": archs[i % 3], "seed": 100 + i, "hidden_size": hidden, "layers": layers}
               for i in range(n)}
    ensure_demo_models(DemoConfig(True, str(root), recipes))
    return {name: ModelSpec(name=name, path=str(root / name), max_tokens=16, max_model_len=1024) for name in recipes}


def workload(pool: dict[str, ModelSpec], n_instances: int, k: int, max_tokens: int) -> list[list[tuple[str, GenRequest]]]:
    """Per instance, its k (expert, request) pairs: experts drawn uniformly without repeats, seeded."""
    questions = load_local(demo_data_path("test.jsonl"), "bench")[:n_instances]
    experts = sorted(pool)
    out = []
    for inst in questions:
        chosen = random.Random(derive_seed("bench", inst.id)).sample(experts, k)
        sampling = Sampling(max_tokens, 0.7, 1.0, derive_seed("bench-answer", inst.id))
        out.append([(e, GenRequest.make(expert_messages(inst), sampling, inst.id)) for e in chosen])
    return out


def executor(pool: dict[str, ModelSpec], engine: str, options: dict, gpus: int, deactivate: str) -> SlotExecutor:
    from skillmoe_ray.config import EngineConfig

    cfg = EngineConfig(engine, "float32" if options.get("device", "cpu") == "cpu" else "bfloat16", options)
    return SlotExecutor(lambda name, slot=0: LocalExpert(create_engine(cfg, pool[name])), n_slots=gpus,
                        deactivate=deactivate, probe=False)


def run(ex: SlotExecutor, stages: list[list[ExpertGroup]]) -> tuple[float, dict]:
    """Wall seconds of running ``stages`` (each a list of groups) and the outputs by request tag."""
    outputs: dict[str, str] = {}

    def done(group, outs, seconds):
        outputs.update({f"{group.expert}/{r.tag}": o.text for r, o in zip(group.requests, outs)})

    start = time.perf_counter()
    for i, groups in enumerate(stages):
        ex.run_stage(f"bench-{i}", groups, [], done)
    wall = time.perf_counter() - start
    ex.close()
    return wall, outputs


def lower_bound(ex_timeline: list[dict], gpus: int) -> float:
    """Pure generation time plus one activation per expert (as measured), spread over the GPUs."""
    generate = sum(t["end"] - t["start"] - t["activation_seconds"] for t in ex_timeline)
    first = {}
    for t in ex_timeline:
        if t["kind"] != "resident":
            first.setdefault(t["expert"], t["activation_seconds"])
    return (generate + sum(first.values())) / gpus


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experts", type=int, default=6)
    parser.add_argument("--instances", type=int, default=24)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--gpus", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--engine", default="hf", help="hf (default) or vllm")
    parser.add_argument("--device", default="cpu", help="hf engine device: cpu or cuda")
    parser.add_argument("--hidden-size", type=int, default=128, help="model width (4096 for 7B-sized)")
    parser.add_argument("--layers", type=int, default=2, help="model depth (32 for 7B-sized)")
    parser.add_argument("--deactivate", default="unload", help="unload (default) or auto (sleep when possible)")
    parser.add_argument("--models-dir", default=None, help="where to build the models (default: a temp dir)")
    args = parser.parse_args(argv)

    root = Path(args.models_dir or tempfile.mkdtemp(prefix="skillmoe-bench-"))
    pool = build_pool(root, args.experts, args.hidden_size, args.layers)
    per_instance = workload(pool, args.instances, args.k, args.max_tokens)
    options = {"device": args.device} if args.engine == "hf" else {}

    grouped_ex = executor(pool, args.engine, options, args.gpus, args.deactivate)
    grouped, grouped_out = run(grouped_ex, [group_by_expert(p for pairs in per_instance for p in pairs)])
    naive_stages = [[ExpertGroup(e, [r])] for pairs in per_instance for e, r in pairs]
    naive_ex = executor(pool, args.engine, options, args.gpus, args.deactivate)
    naive, naive_out = run(naive_ex, naive_stages)
    bound = lower_bound(grouped_ex.timeline, args.gpus)

    result = {
        "workload": f"{args.instances} instances x k={args.k} over {args.experts} experts "
                    f"({args.engine}, {args.device}, hidden {args.hidden_size}, {args.layers} layers, {args.gpus} GPU slot(s), "
                    f"deactivate={args.deactivate})",
        "grouped_s": round(grouped, 2), "naive_s": round(naive, 2), "lower_bound_s": round(bound, 2),
        "grouped_activations": sum(grouped_ex.activations.values()),
        "naive_activations": sum(naive_ex.activations.values()),
        "same_outputs": grouped_out == naive_out,
    }
    print(result["workload"])
    print(f"{'schedule':<22}{'makespan s':>12}{'activations':>13}")
    print(f"{'grouped (the plan)':<22}{grouped:>12.2f}{result['grouped_activations']:>13}")
    print(f"{'per-instance loading':<22}{naive:>12.2f}{result['naive_activations']:>13}")
    print(f"{'lower bound':<22}{bound:>12.2f}{args.experts:>13}")
    print(f"naive / grouped = {naive / grouped:.2f}x; grouped / lower bound = {grouped / bound:.2f}x; "
          f"identical outputs: {result['same_outputs']}")
    return result


if __name__ == "__main__":
    main()
