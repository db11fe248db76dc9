"""Benchmark: what activating one expert really costs with the transformers (hf) engine.

    python -m skillmoe_ray.bench.activation                                   # tiny model, CPU
    python -m skillmoe_ray.bench.activation --preset 7b --device cuda --drop-caches   # GPU machine

One random-weight model is built (or reused) and each phase is timed ``--repeats`` times (median):

- load, cold from disk: the weight files are evicted from the page cache first (fsync, then
  posix_fadvise DONTNEED; with ``--drop-caches``, as root, also /proc/sys/vm/drop_caches). How much
  stayed cached is checked with mincore and printed, since a cache that ignores the hint would
  make "cold" a page-cache figure;
- load from the page cache (the files read once first);
- sleep to pinned host memory and wake back onto the GPU (on the CPU both are no-ops: n/a);
- the first request after a load or wake against a steady-state request (the warm-up effect).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path

from skillmoe_ray.bench.presets import engine_dtype, parameter_count, preset_recipe, resolve_device
from skillmoe_ray.engines.base import PROBE_PROMPT, GenRequest, Sampling

WAKE_TARGET_S = 2.0
DEFAULT_MODELS_DIR = ".cache/skillmoe/bench-models"


def resident_fraction(paths: list[str]) -> float | None:
    """Fraction of the files' pages in the page cache (mincore on a shared mapping); None if unknown."""
    import ctypes
    import ctypes.util
    import mmap

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    except (OSError, AttributeError):  # no libc mincore here (not Linux)
        return None
    page = os.sysconf("SC_PAGE_SIZE")
    resident = total = 0
    for path in paths:
        size = os.path.getsize(path)
        if size == 0:
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr is None or addr == ctypes.c_void_p(-1).value:
                return None
            try:
                pages = (size + page - 1) // page
                vec = (ctypes.c_ubyte * pages)()
                if libc.mincore(addr, size, vec) != 0:
                    return None
                resident += pages - bytes(vec).count(0)
                total += pages
            finally:
                libc.munmap(addr, size)
        finally:
            os.close(fd)
    return resident / total if total else None


def drop_page_cache() -> bool:
    """As root, write 1 to /proc/sys/vm/drop_caches (the whole machine's clean page cache); False if
    not allowed."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
    except OSError:  # a container's /proc/sys is often read-only: fadvise alone then
        return False
    return True


def evict(paths: list[str], drop_caches: bool = False) -> float | None:
    """Evict the files from the page cache; returns the fraction still cached afterwards (None: unknown)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages cannot be dropped
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    if drop_caches:
        drop_page_cache()
    return resident_fraction(paths)


def read_through(paths: list[str], chunk: int = 64 << 20) -> int:
    """Read the files once so they sit in the page cache; returns the bytes read."""
    buf = bytearray(chunk)
    total = 0
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                total += n
    return total


def timed_request(engine, max_tokens: int) -> float:
    """Seconds of one short greedy request (the probe prompt)."""
    request = GenRequest.make(
        [{"role": "user", "content": PROBE_PROMPT}], Sampling(max_tokens, 0.0, 1.0, 0), "bench"
    )
    start = time.perf_counter()
    engine.generate([request])
    return time.perf_counter() - start


def measure(engine, files: list[str], repeats: int, max_tokens: int, drop_caches: bool = False) -> dict:
    """Every phase's seconds per repeat, and the cached fraction left by each eviction."""
    phases: dict[str, list[float]] = defaultdict(list)
    cached_after_evict = []
    for _ in range(repeats):
        cached_after_evict.append(evict(files, drop_caches))
        phases["load_cold"].append(engine.load()["load"])
        engine.unload()
    for i in range(repeats):
        read_through(files)
        phases["load_page_cache"].append(engine.load()["load"])
        phases["first_request_after_load"].append(timed_request(engine, max_tokens))
        if i < repeats - 1:
            engine.unload()
    phases["steady_request"] = [timed_request(engine, max_tokens) for _ in range(repeats)]
    if engine.device != "cpu":
        for _ in range(repeats):
            phases["sleep"].append(engine.sleep()["sleep"])
            phases["wake"].append(engine.wake()["wake"])
            phases["first_request_after_wake"].append(timed_request(engine, max_tokens))
    engine.unload()
    return {"phases": dict(phases), "cached_after_evict": cached_after_evict}


ROWS = (
    ("load_cold", "load, cold from disk", "file"),
    ("load_page_cache", "load, from page cache", "file"),
    ("sleep", "sleep to pinned host RAM", "weights"),
    ("wake", "wake from pinned host RAM", "weights"),
    ("first_request_after_load", "first request after load", None),
    ("first_request_after_wake", "first request after wake", None),
    ("steady_request", "steady-state request", None),
)


def summarize(raw: dict, file_bytes: int, weight_bytes: int, device: str) -> dict:
    """Median seconds and GB/s per phase (GB/s over the file bytes for loads, weight bytes for sleep/wake)."""
    out = {}
    for key, _, basis in ROWS:
        values = raw["phases"].get(key)
        if not values:
            out[key] = {"seconds": None, "note": f"n/a on {device}"}
            continue
        median = statistics.median(values)
        size = {"file": file_bytes, "weights": weight_bytes}.get(basis)
        out[key] = {
            "seconds": round(median, 4),
            "all": [round(v, 4) for v in values],
            "gb_per_s": round(size / median / 1e9, 2) if size and median > 0 else None,
        }
    return out


def human_bytes(n: int) -> str:
    """Bytes in decimal GB, or MB below 1 GB (tiny models)."""
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def print_table(result: dict) -> None:
    """The phases as a readable table, with the sizes and the eviction check above it."""
    print(
        f"model {result['model']} ({result['preset']}, {result['parameters'] / 1e6:,.1f}M parameters), "
        f"hf engine on {result['device']}, {result['dtype']}, median of {result['repeats']}"
    )
    print(
        f"weight bytes: {human_bytes(result['file_bytes'])} on disk, "
        f"{human_bytes(result['weight_bytes'])} loaded ({result['dtype']})"
    )
    cached = result["cached_after_evict"]
    shown = "unknown" if any(c is None for c in cached) else ", ".join(f"{c:.1%}" for c in cached)
    print(
        f"page cache after each eviction: {shown}" + ("" if result["drop_caches"] else " (no --drop-caches)")
    )
    print(f"{'phase':<30}{'seconds':>10}{'GB/s':>8}")
    for key, label, _ in ROWS:
        row = result["phases"][key]
        if row["seconds"] is None:
            print(f"{label:<30}{row['note']:>18}")
        else:
            rate = f"{row['gb_per_s']:.2f}" if row.get("gb_per_s") else ""
            print(f"{label:<30}{row['seconds']:>10.3f}{rate:>8}")
    wake = result["phases"]["wake"]["seconds"]
    if wake is not None:
        print(f"wake < {WAKE_TARGET_S:.0f} s: {'yes' if wake < WAKE_TARGET_S else 'NO'} ({wake:.2f} s)")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--preset", default="tiny", help="tiny (default) or 7b (Llama-2-7B shapes, 13.5 GB bf16)"
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default: cuda when available)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="times each phase is measured (the median is shown)"
    )
    parser.add_argument("--max-tokens", type=int, default=16, help="tokens of the timed requests")
    parser.add_argument(
        "--models-dir", default=DEFAULT_MODELS_DIR, help="where the model is built and reused"
    )
    parser.add_argument(
        "--drop-caches",
        action="store_true",
        help="as root, also write /proc/sys/vm/drop_caches before each cold load (whole machine)",
    )
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: must be at least 1")
    device = resolve_device(args.device)
    engine, parameters = build_engine(args.preset, device, Path(args.models_dir).expanduser())
    files = engine.weight_files()
    raw = measure(engine, files, args.repeats, args.max_tokens, args.drop_caches)
    result = {
        "model": engine.model_path,
        "preset": args.preset,
        "device": device,
        "dtype": engine.dtype,
        "parameters": parameters,
        "repeats": args.repeats,
        "drop_caches": args.drop_caches,
        "file_bytes": sum(os.path.getsize(f) for f in files),
        "weight_bytes": engine.info.weight_bytes,
        "cached_after_evict": raw["cached_after_evict"],
    }
    result["phases"] = summarize(raw, result["file_bytes"], result["weight_bytes"], device)
    print_table(result)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


def build_engine(preset: str, device: str, root: Path):
    """The preset's weight set (built on ``device`` if missing) and an unloaded hf engine for it."""
    from skillmoe_ray.config import DemoConfig, EngineConfig, ModelSpec
    from skillmoe_ray.demo import ensure_demo_models
    from skillmoe_ray.engines import create_engine

    name = f"base-{preset}"
    recipe = preset_recipe(preset, device)
    ensure_demo_models(DemoConfig(True, str(root), {name: recipe}))
    spec = ModelSpec(name=name, path=str(root.resolve() / name), max_tokens=64, max_model_len=1024)
    engine = create_engine(EngineConfig("hf", engine_dtype(device), {"device": device}), spec)
    return engine, parameter_count(recipe)


if __name__ == "__main__":
    main()
