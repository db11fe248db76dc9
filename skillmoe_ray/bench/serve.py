"""``make bench-serve``: the skill lab's service under load, its residency configurations and its two
topologies side by side.

    python -m skillmoe_ray.bench.serve [--window-s 20] [--configs a,b,c,d,e] [--concurrency 1,32] [--json P]

Each configuration is served in turn by the README's serve command (``python -m skillmoe_ray.run
+experiment=skill_lab engine=hf mode=serve``: a process of its own, on a free loopback port, with its own
local Ray), with one residency setting or topology:

- a: the default (no residency setting: the machine's memory budget);
- b: the behaviour before the residency budget and swap-aware batching: ``scheduler.residency=single``
  (one resident model per slot, so every micro-batch swaps) and ``serve.max_cold_wait_ms=0`` (no request
  waits to share a load with a later batch: each micro-batch loads what its own requests need);
- c: every model resident: ``resources.gpu_memory_gb`` twice the whole pool's footprint;
- d: a budget that holds half of the pool: half the pool's footprints per slot (plus 2%), as the scheduler
  counts them (:func:`~skillmoe_ray.scheduling.residency.footprints_from_config`) for the engine the services
  run (``--set engine=vllm_cpu`` makes a load an engine start);
- e: ``serve.topology=per_expert``: each model a Serve deployment of its own, all resident, called side by
  side (a..d are the ``single`` topology: one answering replica holding the pool).

Once a configuration's ready line is printed (after its warm-up), its first request is timed alone, then at
each concurrency a closed-loop window (:func:`~skillmoe_ray.bench.load.closed_loop`: the official
``openai`` client over HTTP) measures requests/s and p50/p95/p99 latency, and ``/v1/stats`` read before and
after the window gives the expert loads and wakes during it (``activations``) and the models resident at
its end. Every request is a lab test question with a suffix unique to the run, so the generation cache
answers none of them. A service is stopped (SIGTERM, as Ctrl-C would) before the next one starts and at
the end, also on an error or Ctrl-C. The table at the end compares each configuration to (c) at the same
concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

from skillmoe_ray.bench.load import Window, closed_loop, openai_client, timed_request
from skillmoe_ray.bench.serve_table import CONFIGS, Row, format_table, ratios_to_c, row_of, spread
from skillmoe_ray.scheduling.residency import GB, footprints_from_config, slot_memory_bytes

if TYPE_CHECKING:
    from skillmoe_ray.config import RunConfig
    from skillmoe_ray.data.instances import Instance

# The README's serve command of the skill lab; each configuration adds its port and its residency setting.
BASE = ("+experiment=skill_lab", "engine=hf", "mode=serve")
SERVING_LINE = "skillmoe-ray is serving on"
READY_LINE = "resident: "  # the line after SERVING_LINE: what the warm-up left resident
# The first configuration also builds the validation profiles (cached for the others): minutes on 2 cores.
READY_TIMEOUT_S = 1800
STOP_TIMEOUT_S = 60
REQUEST_TIMEOUT_S = 300


class ServiceError(RuntimeError):
    """A service that exited or stayed silent before its ready line."""


def progress(line: str) -> None:
    print(f"bench-serve: {line}", flush=True)


def config_list(text: str) -> list[str]:
    """``a,b,c,d`` -> the configurations in that order; one named twice is measured twice (interleaving
    ``b,d,b,d`` exposes a drift of the machine's speed during the run, which a single pass would read as a
    difference between configurations)."""
    letters = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in letters if c not in CONFIGS]
    if unknown or not letters:
        bad = repr(unknown[0]) if unknown else "none"
        raise argparse.ArgumentTypeError(f"unknown configuration {bad}; valid: {', '.join(CONFIGS)}")
    return letters


def level_list(text: str) -> list[int]:
    """``1,32`` -> the concurrency levels (positive integers)."""
    try:
        levels = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return levels


def positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return seconds


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m skillmoe_ray.bench.serve", description=(
        "make bench-serve: the served skill lab under load, its residency configurations side by side"))
    parser.add_argument("--window-s", type=positive_seconds, default=20.0,
                        help="seconds each concurrency level is measured (default 20)")
    parser.add_argument("--configs", type=config_list, default="a,b,c,d,e",
                        help="configurations to run, in order: a default, b single, c all resident, d half, "
                             "e per_expert topology (repeat one to measure it again, e.g. b,d,b,d)")
    parser.add_argument("--concurrency", type=level_list, default="1,32",
                        help="concurrent clients per window, comma-separated (default 1,32)")
    parser.add_argument("--json", metavar="PATH", help="also write the table's rows to this JSON file")
    parser.add_argument("--set", dest="extra", metavar="KEY=VALUE", action="append", type=override,
                        default=[],
                        help="a config override added to every configuration's serve command, after its own "
                             "(repeatable; e.g. --set serve.max_cold_wait_ms=1000)")
    return parser.parse_args(argv)


def override(text: str) -> str:
    """A Hydra override as the serve command takes it: key=value, +key=value or ~key."""
    key = text.split("=", 1)[0].lstrip("+~")
    if not key or ("=" not in text and not text.startswith("~")) or " " in key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (a config override), got {text!r}")
    return text


def pool_footprints(cfg: RunConfig) -> dict[str, float]:
    """Bytes each pool model holds while resident under an explicit budget (``resources.gpu_memory_gb``
    set, as in (c) and (d)), by the executor's own rule, before any load (the weight files on disk)."""
    machine = slot_memory_bytes(None, "budget", cfg.resources.gpus) or GB
    resources = dataclasses.replace(cfg.resources, gpu_memory_gb=machine / GB)
    budgeted = dataclasses.replace(cfg, resources=resources)
    of = footprints_from_config(budgeted)
    return {name: of(name, 0) for name in cfg.pool}


def whole_pool_gb(footprints: Mapping[str, float]) -> float:
    """A slot budget (GB) that holds every model: twice the sum, as loaded weights may differ from files."""
    return 2 * sum(footprints.values()) / GB


# (d)'s budget is half of the pool's footprint plus this share: the printed budget is rounded, and a model's
# footprint after its load (measured weights) may exceed the estimate from its files by a little.
HALF_POOL_SLACK = 0.02


def half_pool_gb(footprints: Mapping[str, float], slots: int) -> float:
    """A slot budget (GB) under which the slots together hold half of the pool's footprint (and the slack)."""
    return sum(footprints.values()) / 2 / max(slots, 1) / GB * (1 + HALF_POOL_SLACK)


def models_held(footprints: Mapping[str, float], budget_gb: float) -> int:
    """How many models one slot of ``budget_gb`` holds at most (the smallest first)."""
    used, held = 0.0, 0
    for size in sorted(footprints.values()):
        if used + size > budget_gb * GB:
            break
        used, held = used + size, held + 1
    return held


def config_overrides(letter: str, footprints: Mapping[str, float], slots: int) -> list[str]:
    """The command-line settings of configuration ``letter`` beyond the README's serve command."""
    return {
        "a": [],
        "b": ["scheduler.residency=single", "serve.max_cold_wait_ms=0"],
        "c": [f"resources.gpu_memory_gb={whole_pool_gb(footprints):.9g}"],
        "d": [f"resources.gpu_memory_gb={half_pool_gb(footprints, slots):.9g}"],
        "e": ["serve.topology=per_expert"],
    }[letter]


def question_source(instances: Sequence[Instance], tag: str) -> Callable[[], str]:
    """The next question to send: the lab's test questions in turn, each with a suffix never sent before."""
    from skillmoe_ray.method.skills import question_text

    texts = [question_text(inst) for inst in instances]
    counter = itertools.count()

    def next_question() -> str:
        n = next(counter)
        return f"{texts[n % len(texts)]}\n({tag}-{n})"

    return next_question


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServedConfig:
    """One configuration served by its own ``python -m skillmoe_ray.run`` process, from start to ready line;
    leaving the ``with`` block stops it (SIGTERM, then SIGKILL of its process group), whatever happened."""

    def __init__(self, overrides: Sequence[str], work: Path):
        self.port = free_port()
        self.command = [sys.executable, "-m", "skillmoe_ray.run", *BASE, f"serve.port={self.port}",
                        f"hydra.run.dir={work / 'run'}", *overrides]
        self.log_path = work / "serve.log"
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> str:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # its own session: a Ctrl-C at the terminal reaches the benchmark, which stops the service in order
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, start_new_session=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        threading.Thread(target=self.pump, daemon=True).start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.stop()

    def pump(self) -> None:
        """Copy the service's output to its log (a full pipe would stall it) and hand each line over."""
        with open(self.log_path, "w", encoding="utf-8") as log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_ready(self) -> None:
        """Return at the ready line; ServiceError if the service exits or stays silent before it."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = ""
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise ServiceError(f"no ready line in {READY_TIMEOUT_S} s (log: {self.log_path})") from None
            if line is None:
                code = self.process.wait()
                raise ServiceError(f"the service exited ({code}) before its ready line: {last!r} "
                                   f"(log: {self.log_path})")
            if line.startswith(SERVING_LINE):
                progress(f"  {line.split(' (')[0]}")
            elif line.startswith(READY_LINE):
                progress(f"  ready; {line}")
                return
            last = line or last

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # the service shuts Serve down, then its Ray
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                progress(f"  the service did not stop in {STOP_TIMEOUT_S} s: killing its process group")
        with suppress(ProcessLookupError, PermissionError):  # what it started and left behind, if anything
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        self.process = None


def stats(url: str) -> dict:
    """The service's ``GET /v1/stats``."""
    with urllib.request.urlopen(f"{url}/v1/stats", timeout=30) as response:
        return json.loads(response.read())


async def first_request_s(url: str, question: str) -> float | None:
    """Seconds to answer one request on its own (None if it failed)."""
    window = Window()
    async with openai_client(url, REQUEST_TIMEOUT_S) as client:
        await timed_request(client, "symbolic-moe", question, window)
    return window.latencies[0] if window.latencies else None


def measure(letter: str, url: str, args: argparse.Namespace, next_question: Callable[[], str]) -> list[Row]:
    """The first request, then one window per concurrency level, of the service at ``url``."""
    first = asyncio.run(first_request_s(url, next_question()))
    progress(f"  first request after the ready line: {'failed' if first is None else f'{first:.2f} s'}")
    rows = []
    for clients in args.concurrency:
        progress(f"  measuring {clients} client(s) for {args.window_s:g} s")
        before = stats(url)
        window = asyncio.run(closed_loop(url, clients, args.window_s, next_question, REQUEST_TIMEOUT_S))
        rows.append(row_of(letter, clients, window, (before, stats(url)), first))
        r = rows[-1]
        progress(f"  {r.requests_per_s:g} req/s, p50 {r.p50_s} s, p95 {r.p95_s} s, {r.ok} answered, "
                 f"errors {r.errors or 0}, activations {r.activations}, resident {r.resident}")
    return rows


def run_config(letter: str, overrides: list[str], args: argparse.Namespace, work: Path,
               next_question: Callable[[], str]) -> list[Row]:
    progress(f"({letter}) {CONFIGS[letter]}: deploying {' '.join(overrides) or '(no residency setting)'}; "
             "it prepares and warms up before its ready line")
    with ServedConfig(overrides, work / f"serve-{letter}") as url:
        rows = measure(letter, url, args, next_question)
        progress(f"({letter}) stopping the service")
    return rows


def lab_setup(run_dir: Path, extra: Sequence[str] = ()) -> tuple[RunConfig, list[Instance]]:
    """The lab's serve config with the run's ``--set`` overrides (its models built or copied first, as the
    service would) and test questions: (c) and (d) budget the footprints of the engine the services run."""
    from skillmoe_ray.config.compose import compose_tree
    from skillmoe_ray.preflight import load_checked

    cfg, _, test = load_checked(compose_tree([*BASE, *extra]), str(run_dir))
    return cfg, test


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="skillmoe-bench-serve-"))
    progress(f"the skill lab's config and test questions (service logs under {work})")
    cfg, test = lab_setup(work / "setup", args.extra)
    footprints = pool_footprints(cfg)
    half = half_pool_gb(footprints, cfg.resources.gpus)
    progress(f"pool: {len(footprints)} models, {sum(footprints.values()) / 1e6:.3f} MB resident together; "
             f"(c) budget {whole_pool_gb(footprints):.9g} GB, (d) {half:.9g} GB per slot "
             f"(holds {models_held(footprints, half)} of {len(footprints)} per slot)")
    next_question = question_source(test, str(int(time.time())))
    rows, code = [], 0
    try:
        for letter in args.configs:
            overrides = config_overrides(letter, footprints, cfg.resources.gpus) + args.extra
            rows += run_config(letter, overrides, args, work, next_question)
    except KeyboardInterrupt:
        progress("interrupted (Ctrl-C): the service is stopped; the table holds what was measured")
        code = 130
    except ServiceError as exc:
        print(f"bench-serve: error: {exc}", file=sys.stderr, flush=True)
        code = 1
    print(format_table(rows), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{**dataclasses.asdict(r), "vs_c": ratio, "p95_over_p50": spread(r)}
             for r, ratio in zip(rows, ratios_to_c(rows))], indent=2) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
