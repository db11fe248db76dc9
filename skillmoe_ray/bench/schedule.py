"""Benchmark: grouped expert activation vs per-instance loading vs a lower bound, run for real.

    python -m skillmoe_ray.bench.schedule                       # tiny models, transformers, CPU
    python -m skillmoe_ray.bench.schedule --experts 8 --instances 40 --gpus 2
    python -m skillmoe_ray.bench.schedule --preset 7b --experts 8 --share-weights --device cuda \
        --deactivate auto --instances 16 --max-tokens 32          # GPU machine, 7B-sized experts

The same workload (each instance routed to k experts, seeded) runs twice through the real
executor and engines: grouped (the batch plan: one activation per expert, its whole group in one
call) and naive (instances in order, each request activating its expert, as routing without
grouping would). The lower bound is the grouped run's pure generation time plus one measured
activation per expert, divided over the GPUs. Deactivation is an unload by default: on a CPU a
"sleep" frees nothing, so only a reload shows what switching really costs.

``--preset 7b`` gives every expert Llama-2-7B's shapes (13.5 GB in bfloat16, drawn on the GPU with
``--device cuda``). ``--share-weights`` builds one weight set and gives each expert its own
directory of hardlinks (symlinks where hardlinks fail) to it: 8 x 13.5 GB would not fit a 64 GB
disk. The experts keep distinct names, paths and engines, but their files are one inode, so
after the first read every load, also the per-instance order's, comes from the page cache; that
favours the per-instance order, so the ratio measured this way is conservative.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from skillmoe_ray.bench.presets import PRESETS, engine_dtype, parameter_count, preset_recipe
from skillmoe_ray.config import DemoConfig, ModelSpec
from skillmoe_ray.data import demo_data_path
from skillmoe_ray.data.local import load_local
from skillmoe_ray.demo import ensure_demo_models
from skillmoe_ray.engines import create_engine
from skillmoe_ray.engines.base import GenRequest, Sampling
from skillmoe_ray.method.aggregate import expert_messages
from skillmoe_ray.scheduling.executor import SlotExecutor
from skillmoe_ray.scheduling.grouping import ExpertGroup, group_by_expert
from skillmoe_ray.scheduling.handles import LocalExpert
from skillmoe_ray.scheduling.policy import ExecutionPolicy
from skillmoe_ray.seeding import derive_seed


def build_pool(root: Path, n: int, hidden: int, layers: int) -> dict[str, ModelSpec]:
    """``n`` random-weight experts of the demo's architectures (built once, then reused)."""
    archs = ("llama", "qwen3", "mistral")
    recipes = {f"bench-{i}": {"arch": archs[i % 3], "seed": 100 + i, "hidden_size": hidden, "layers": layers}
               for i in range(n)}
    return build_recipes(root, recipes)


def build_recipes(root: Path, recipes: dict[str, dict]) -> dict[str, ModelSpec]:
    """Build (or reuse) one model per recipe under ``root``; their specs by name."""
    ensure_demo_models(DemoConfig(True, str(root), recipes))
    return {name: spec(name, root / name) for name in recipes}


def spec(name: str, path: Path) -> ModelSpec:
    return ModelSpec(name=name, path=str(path), max_tokens=16, max_model_len=1024)


def base_recipe(preset: str, device: str, hidden: int, layers: int) -> dict:
    """The recipe of the preset's weight set (tiny takes --hidden-size and --layers)."""
    recipe = preset_recipe(preset, device)
    if preset == "tiny":
        recipe.update(hidden_size=hidden, layers=layers)
    return recipe


def require_disk(root: Path, recipe: dict, copies: int) -> None:
    """Refuse to start building ``copies`` real-sized models that cannot fit the disk under ``root``."""
    need = 2 * parameter_count(recipe) * copies  # bfloat16 files
    free = shutil.disk_usage(root).free
    if need > free:
        raise SystemExit(
            f"{copies} models of {need / copies / 1e9:.1f} GB need {need / 1e9:.0f} GB but "
            f"{root} has {free / 1e9:.0f} GB free: use --share-weights (one weight set, hardlinked)"
        )


def link_tree(base: Path, out: Path) -> str:
    """Make ``out`` a directory of hardlinks to ``base``'s files (symlinks if hardlinks fail);
    returns which."""
    out.mkdir(parents=True, exist_ok=True)
    kind = "hardlink"
    for src in sorted(p for p in base.iterdir() if p.is_file()):
        dst = out / src.name
        if dst.exists() and os.path.samefile(src, dst):
            continue
        dst.unlink(missing_ok=True)  # never write through an old link: it may share an inode
        try:
            os.link(src, dst)
        except OSError:
            dst.symlink_to(src.resolve())
            kind = "symlink"
    return kind


def shared_pool(root: Path, n: int, recipe: dict) -> tuple[dict[str, ModelSpec], str]:
    """``n`` experts (distinct names and directories) whose files all link to one built weight set."""
    base = f"base-{recipe_label(recipe)}"
    build_recipes(root, {base: recipe})
    pool, kinds = {}, set()
    for i in range(n):
        name = f"bench-{i}"
        kinds.add(link_tree(root / base, root / "shared" / name))
        pool[name] = spec(name, root / "shared" / name)
    return pool, "symlink" if "symlink" in kinds else "hardlink"


def recipe_label(recipe: dict) -> str:
    """The preset a recipe came from (its name in the models dir), or 'custom'."""
    for name, shape in PRESETS.items():
        if all(recipe.get(k) == v for k, v in shape.items()):
            return name
    return "custom"


def workload(
    pool: dict[str, ModelSpec], n_instances: int, k: int, max_tokens: int
) -> list[list[tuple[str, GenRequest]]]:
    """Per instance, its k (expert, request) pairs: experts drawn uniformly without repeats, seeded."""
    questions = load_local(demo_data_path("test.jsonl"), "bench")[:n_instances]
    experts = sorted(pool)
    out = []
    for inst in questions:
        chosen = random.Random(derive_seed("bench", inst.id)).sample(experts, k)
        sampling = Sampling(max_tokens, 0.7, 1.0, derive_seed("bench-answer", inst.id))
        out.append([(e, GenRequest.make(expert_messages(inst), sampling, inst.id)) for e in chosen])
    return out


def executor(
    pool: dict[str, ModelSpec],
    engine: str,
    options: dict,
    gpus: int,
    deactivate: str,
    host_ram_bytes: float = float("inf"),
) -> SlotExecutor:
    from skillmoe_ray.config import EngineConfig

    cfg = EngineConfig(engine, engine_dtype(options.get("device", "cpu")), options)
    policy = ExecutionPolicy(
        n_slots=gpus, deactivate=deactivate, host_ram_bytes=host_ram_bytes, probe_after_wake=False
    )
    return SlotExecutor(lambda name, slot=0: LocalExpert(create_engine(cfg, pool[name])), policy)


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experts", type=int, default=6)
    parser.add_argument("--instances", type=int, default=24)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--gpus", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--engine", default="hf", help="hf (default) or vllm")
    parser.add_argument("--device", default="cpu", help="hf engine device: cpu or cuda")
    parser.add_argument(
        "--preset",
        default="tiny",
        choices=sorted(PRESETS),
        help="tiny (sized by --hidden-size/--layers) or 7b (Llama-2-7B shapes, 13.5 GB each)",
    )
    parser.add_argument("--hidden-size", type=int, default=128, help="model width of the tiny preset")
    parser.add_argument("--layers", type=int, default=2, help="model depth of the tiny preset")
    parser.add_argument(
        "--share-weights",
        action="store_true",
        help="one weight set, hardlinked into each expert's directory (loads then hit the page cache)",
    )
    parser.add_argument(
        "--deactivate", default="unload", help="unload (default) or auto (sleep when possible)"
    )
    parser.add_argument(
        "--host-ram-gb",
        type=float,
        default=64.0,
        help="host RAM sleeping experts may hold (pinned) with --deactivate auto; beyond it they unload",
    )
    parser.add_argument("--models-dir", default=None, help="where to build the models (default: a temp dir)")
    parser.add_argument(
        "--json", default=None, help="also write the figures and both timelines to this JSON file"
    )
    args = parser.parse_args(argv)
    if args.k > args.experts:
        parser.error(f"--k {args.k} is more than --experts {args.experts}")
    problem = unworkable(args.engine, args.device, args.deactivate, args.gpus)
    if problem:
        parser.error(problem)
    return args


def unworkable(engine: str, device: str, deactivate: str, gpus: int) -> str | None:
    """Why this bench cannot run a combination, or None. Every expert here lives in the bench's own process,
    and vLLM serves one engine per process on CUDA (its CuMem allocator asserts so); on the CPU engines follow
    one another but must not coexist (sleepers, or several slots loading at once)."""
    if engine != "vllm":
        return None
    if device.startswith("cuda"):
        return (
            "--engine vllm --device cuda: one vLLM engine per process on CUDA, and this bench runs every "
            "expert in its own process; use jobs/gpu_bench.sh vllm (expert actors) or --engine hf"
        )
    if deactivate != "unload":
        return (
            f"--engine vllm --deactivate {deactivate}: sleeping experts would keep several vLLM engines "
            "in one process; use --deactivate unload"
        )
    if gpus > 1:
        return (
            f"--engine vllm --gpus {gpus}: the slots would load vLLM engines side by side in one "
            "process; use --gpus 1"
        )
    return None


def make_pool(args: argparse.Namespace, root: Path) -> tuple[dict[str, ModelSpec], str]:
    """The experts, and how their weights are stored (own files, hardlinks or symlinks)."""
    recipe = base_recipe(args.preset, args.device, args.hidden_size, args.layers)
    if args.share_weights:
        return shared_pool(root, args.experts, recipe)
    if args.preset == "tiny":
        return build_pool(root, args.experts, args.hidden_size, args.layers), "own files"
    root.mkdir(parents=True, exist_ok=True)
    missing = sum(not (root / f"bench-{i}" / ".built").is_file() for i in range(args.experts))
    require_disk(root, recipe, missing)
    recipes = {f"bench-{i}": {**recipe, "seed": 100 + i} for i in range(args.experts)}
    return build_recipes(root, recipes), "own files"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    root = Path(args.models_dir or tempfile.mkdtemp(prefix="skillmoe-bench-")).expanduser()
    pool, storage = make_pool(args, root)
    per_instance = workload(pool, args.instances, args.k, args.max_tokens)
    options = {"device": args.device} if args.engine == "hf" else {}
    host_ram = args.host_ram_gb * 1e9

    grouped_ex = executor(pool, args.engine, options, args.gpus, args.deactivate, host_ram)
    grouped, grouped_out = run(grouped_ex, [group_by_expert(p for pairs in per_instance for p in pairs)])
    print(f"grouped: {grouped:.2f} s; now the per-instance order", flush=True)
    naive_stages = [[ExpertGroup(e, [r])] for pairs in per_instance for e, r in pairs]
    naive_ex = executor(pool, args.engine, options, args.gpus, args.deactivate, host_ram)
    naive, naive_out = run(naive_ex, naive_stages)
    bound = lower_bound([t.to_json() for t in grouped_ex.timeline], args.gpus)

    size = (
        f"preset {args.preset}"
        if args.preset != "tiny"
        else f"hidden {args.hidden_size}, {args.layers} layers"
    )
    result = {
        "workload": f"{len(per_instance)} instances x k={args.k} over {args.experts} experts "
        f"({args.engine}, {args.device}, {size}, {args.gpus} GPU slot(s), "
        f"deactivate={args.deactivate}, host RAM {args.host_ram_gb:g} GB, max_tokens {args.max_tokens})",
        "weights": storage,
        "grouped_s": round(grouped, 2),
        "naive_s": round(naive, 2),
        "lower_bound_s": round(bound, 2),
        "naive_over_grouped": round(naive / grouped, 2),
        "grouped_over_bound": round(grouped / bound, 2),
        "grouped_activations": sum(grouped_ex.activations.values()),
        "naive_activations": sum(naive_ex.activations.values()),
        "same_outputs": grouped_out == naive_out,
    }
    print_result(result, args.experts)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        timelines = {
            "grouped_timeline": [t.to_json() for t in grouped_ex.timeline],
            "naive_timeline": [t.to_json() for t in naive_ex.timeline],
        }
        Path(args.json).write_text(json.dumps({**result, **timelines}, indent=2))
    return result


def print_result(result: dict, experts: int) -> None:
    """The header, the three makespans and the ratios."""
    print(result["workload"])
    if result["weights"] != "own files":
        print(
            f"weights: one set shared by every expert ({result['weights']}s): the per-instance order's loads "
            "read from the page cache, which favours it, so naive / grouped is conservative"
        )
    print(f"{'schedule':<22}{'makespan s':>12}{'activations':>13}")
    print(f"{'grouped (the plan)':<22}{result['grouped_s']:>12.2f}{result['grouped_activations']:>13}")
    print(f"{'per-instance loading':<22}{result['naive_s']:>12.2f}{result['naive_activations']:>13}")
    print(f"{'lower bound':<22}{result['lower_bound_s']:>12.2f}{experts:>13}")
    print(
        f"naive / grouped = {result['naive_over_grouped']:.2f}x; grouped / lower bound = "
        f"{result['grouped_over_bound']:.2f}x; identical outputs: {result['same_outputs']}"
    )


if __name__ == "__main__":
    main()
